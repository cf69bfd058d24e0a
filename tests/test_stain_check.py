"""The stain check tells DAB IHC from slides whose 'DAB' channel is another colour."""

from __future__ import annotations

import numpy as np
import pytest

from napari_her2._sample_data import ihc_mosaic
from napari_her2.ihc.stain_check import check_stain


def test_dab_ihc_passes():
    check = check_stain(ihc_mosaic(rows=1, cols=1))
    assert check.looks_like_dab and check.warning is None
    assert 10 <= check.dab_hue_deg <= 45


def test_eosin_pink_is_flagged():
    rgb = np.full((64, 64, 3), 255, np.uint8)
    rgb[:, :32] = (200, 80, 170)  # H&E-like eosin/purple
    check = check_stain(rgb)
    assert not check.looks_like_dab
    assert "not brown" in check.warning


def test_too_little_dab_is_not_judged():
    rgb = np.full((64, 64, 3), 250, np.uint8)
    check = check_stain(rgb)
    assert check.looks_like_dab and check.dab_hue_deg is None


def test_real_he_slide_is_flagged_and_real_her2_patches_pass(shared_data):
    from skimage.io import imread

    from napari_her2 import open_slide

    he = open_slide(shared_data / "slides" / "cmu-1-small-region.svs")
    assert not check_stain(he.levels[1].compute()).looks_like_dab
    for name in ("00052_test_3+.png", "00249_test_2+.png"):
        rgb = imread(shared_data / "her2-ihc-bci" / name)[..., :3]
        assert check_stain(rgb).looks_like_dab, name


@pytest.mark.parametrize("brown", [(150, 95, 50), (120, 70, 30)])
def test_brown_shades_pass(brown):
    rgb = np.full((64, 64, 3), 255, np.uint8)
    rgb[:, :32] = brown
    assert check_stain(rgb).looks_like_dab


def test_grey_blue_nuclei_of_an_unstained_field_are_not_judged():
    """Dense nuclei of HER2 0 tissue leak into the DAB channel as grey-blue pixels: that is
    haematoxylin, on every IHC slide, and says nothing of the chromogen."""
    rgb = np.full((64, 64, 3), 235, np.uint8)
    rgb[:, :8] = (110, 110, 118)  # a dark, grey-blue nucleus: DAB OD about 0.3
    check = check_stain(rgb)
    assert check.looks_like_dab and check.warning is None and check.dab_hue_deg is None
    rgb[:, 8:16] = (150, 95, 50)  # brown beside them is judged on its own hue
    check = check_stain(rgb)
    assert check.looks_like_dab and 10 <= check.dab_hue_deg <= 45


def test_eosin_beside_haematoxylin_is_still_flagged():
    rgb = np.full((64, 64, 3), 255, np.uint8)
    rgb[:, :16] = (110, 110, 118)
    rgb[:, 16:32] = (200, 80, 170)
    check = check_stain(rgb)
    assert not check.looks_like_dab and 270 <= check.dab_hue_deg < 360


def test_red_is_not_dab():
    rgb = np.full((64, 64, 3), 255, np.uint8)
    rgb[:, :32] = (200, 40, 40)  # a red chromogen or fluorophore
    check = check_stain(rgb)
    assert not check.looks_like_dab and "not brown" in check.warning


def test_dark_background_is_flagged_as_fluorescence():
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[20:40, 20:40] = (180, 30, 20)  # bright red signal on black
    check = check_stain(rgb)
    assert not check.looks_like_dab and "fluorescence" in check.warning


def test_real_fluorescence_and_he_are_flagged(shared_data):
    from napari_her2 import open_slide

    for name in ("test3-DAPI-2-387.ndpi", "cmu-1-small-region.svs"):
        slide = open_slide(shared_data / "slides" / name)
        check = check_stain(slide.levels[-1].compute())
        assert not check.looks_like_dab and check.warning, name


def test_real_her2_ihc_passes(shared_data):
    from skimage import data
    from skimage.io import imread

    assert check_stain(data.immunohistochemistry()).looks_like_dab
    images = [shared_data / "her2-ihc-bci" / n for n in ("00052_test_3+.png", "00249_test_2+.png")]
    images += sorted((shared_data / "her2-ihc-tma").glob("2_*.jpg"))
    for path in images:
        rgb = imread(path)[::4, ::4, :3]
        check = check_stain(rgb)
        assert check.looks_like_dab and check.warning is None, (path.name, check)
