"""Tumour found from haematoxylin morphology alone: HER2 0 carcinoma is tumour and scores 0."""

from __future__ import annotations

import numpy as np
import pytest

from napari_her2.ihc.deconvolution import DEFAULT_DAB, DEFAULT_HAEMATOXYLIN, stain_matrix
from napari_her2.ihc.membrane import CLASSES
from napari_her2.ihc.scorer import DabMembraneScorer
from napari_her2.ihc.tumour import TumourParams, epithelial_nuclei, tumour_mask

MPP = 0.5


def render(nuclei_mask: np.ndarray, od: float = 0.5) -> np.ndarray:
    """RGB of blue nuclei (haematoxylin OD ``od``) on a faint counterstain, no DAB at all."""
    m = stain_matrix(DEFAULT_HAEMATOXYLIN, DEFAULT_DAB)
    density = nuclei_mask[..., None] * od * m[0] + 0.03 * m[0]
    return np.clip(255 * 10 ** (-density), 0, 255).astype(np.uint8)


def discs(radius_um: float, period_um: float, *, elongate: float = 1.0) -> np.ndarray:
    """256x256 mask of ellipses on a lattice: radius along x, radius / elongate along y."""
    yy, xx = np.mgrid[:256, :256] * MPP
    period = period_um
    dy = (yy % period) - period / 2
    dx = (xx % period) - period / 2
    return (dx / radius_um) ** 2 + (dy * elongate / radius_um) ** 2 < 1


EPITHELIUM = discs(radius_um=4.5, period_um=14)  # plump 9 um nuclei, packed
STROMA = discs(radius_um=6.0, period_um=40, elongate=5)  # sparse thin spindle nuclei
SMALL = discs(radius_um=1.5, period_um=9)  # dense small round nuclei (3 um, under the size cut)


@pytest.mark.parametrize(
    ("mask", "is_tumour"),
    [(EPITHELIUM, True), (STROMA, False), (SMALL, False), (np.zeros((256, 256), bool), False)],
    ids=["epithelium", "stroma", "small-nuclei", "blank"],
)
def test_tumour_is_found_from_nuclear_morphology(mask, is_tumour):
    from napari_her2.ihc.deconvolution import deconvolve

    h, _ = deconvolve(render(mask)[None])
    tumour, _ = tumour_mask(h, TumourParams(), MPP)
    assert (tumour.mean() > 0.5) == is_tumour, tumour.mean()


def test_unstained_epithelium_scores_0_not_non_tumour():
    probs = DabMembraneScorer().predict(render(EPITHELIUM)[None]).probs[0]
    assert CLASSES[int(probs.argmax())] == "0", probs


def test_epithelial_nuclei_keep_plump_objects_only():
    mask = np.zeros((1, 64, 64), bool)
    yy, xx = np.mgrid[:64, :64]
    mask[0] |= (yy - 16) ** 2 + (xx - 16) ** 2 < 25  # disc of radius 5 px = 5 um at 1 um/px
    mask[0, 40:42, 5:60] = True  # a 2 um wide strand
    kept = epithelial_nuclei(mask, TumourParams(), px_um=1.0)
    assert kept[0, 16, 16] and not kept[0, 41, 30]


def test_params_are_checked():
    with pytest.raises(ValueError):
        TumourParams(min_density=0)
    with pytest.raises(ValueError):
        TumourParams(min_area_um2=-1)


# --------------------------------------------------------------------------- real pixels


def _tiles(image: np.ndarray, size: int = 256) -> np.ndarray:
    n_y, n_x = image.shape[0] // size, image.shape[1] // size
    cut = image[: n_y * size, : n_x * size]
    return cut.reshape(n_y, size, n_x, size, 3).transpose(0, 2, 1, 3, 4).reshape(-1, size, size, 3)


def test_real_her2_0_carcinoma_is_tumour_and_scores_0(shared_data):
    """A HER2 0 oesophageal adenocarcinoma core (pathologists' score 0): the centre of the
    core is carcinoma without DAB, found as tumour and scored 0 (gastric rules, 0.25 um/px,
    an estimate of that scan's resolution)."""
    from skimage.io import imread


    path = shared_data / "her2-ihc-tma" / "0_a6d0d6a6-4dc6-4368-9d69-8ded066cf60e.jpg"
    rgb = imread(path)[2200:3224, 2200:3224, :3]
    tiles = _tiles(rgb)
    scorer = DabMembraneScorer().for_organ("gastric").at_mpp(0.25).for_slide(tiles)
    probs = scorer.predict(tiles).probs
    calls = probs.argmax(axis=1)
    tumour = calls != CLASSES.index("non-tumour")
    assert tumour.mean() >= 0.5, calls
    assert (calls[tumour] == 0).mean() >= 0.9, calls


def test_real_faint_breast_carcinoma_is_tumour(shared_data):
    """BCI 00007 (slide scored 1+): nests of carcinoma with faint staining are tumour."""
    from skimage.io import imread

    rgb = imread(shared_data / "her2-ihc-bci" / "00007_test_1+.png")[..., :3]
    tiles = _tiles(rgb)
    scorer = DabMembraneScorer().for_slide(tiles)
    calls = scorer.predict(tiles).probs.argmax(axis=1)
    assert (calls != CLASSES.index("non-tumour")).mean() >= 0.75, calls


def test_a_dark_nucleus_is_measured_at_its_half_maximum_not_spread_by_the_blur():
    """A small dark nucleus spreads under the smoothing: measured on its whole detected region
    it is far larger than it is, as large as a pale carcinoma nucleus. Measured on its
    half-maximum contour, each has its own size (``NucleusParams.edge_fraction``)."""
    from dataclasses import replace

    from napari_her2.ihc.cells import CellParams, measure_cells

    yy, xx = np.mgrid[:128, :128] * MPP
    dark = (yy - 16) ** 2 + (xx - 16) ** 2 < 2.5**2  # 5 um across, OD 0.8
    pale = (yy - 40) ** 2 + (xx - 40) ** 2 < 5.0**2  # 10 um across, OD 0.08
    rgb = np.minimum(render(dark, od=0.8), render(pale, od=0.08))[None]

    def areas(p: CellParams) -> list[float]:
        cells = measure_cells(rgb, p)
        centres = np.stack([cells.y, cells.x], axis=1) * MPP
        return [float(cells.nucleus_area_um2[np.argmin(((centres - c) ** 2).sum(1))])
                for c in ((16, 16), (40, 40))]

    p = CellParams(mpp=MPP)
    half_dark, half_pale = areas(p)
    spread_dark, _ = areas(replace(p, nucleus=replace(p.nucleus, edge_fraction=0.0)))
    true_dark, true_pale = np.pi * 2.5**2, np.pi * 5.0**2
    assert spread_dark > 1.5 * true_dark, spread_dark  # the whole region: it spreads
    assert 0.6 * true_dark <= half_dark <= 1.2 * true_dark, half_dark
    assert 0.6 * true_pale <= half_pale <= 1.5 * true_pale, half_pale
    assert half_pale > 2 * half_dark


def test_packed_small_dark_nuclei_are_not_tumour_cells():
    """Dense small dark nuclei (lymphocytes, cellular stroma: 5 um across, 11 um apart) are
    found as cells but are not carcinoma; measured on their spread regions they were."""
    from dataclasses import replace

    from napari_her2.ihc.cells import CellParams, measure_cells

    small_dark = render(discs(radius_um=2.5, period_um=11), od=0.8)[None]
    p = CellParams(mpp=MPP)
    cells = measure_cells(small_dark, p)
    assert len(cells) > 100 and cells.tumour.sum() == 0
    spread = replace(p, nucleus=replace(p.nucleus, edge_fraction=0.0))
    assert measure_cells(small_dark, spread).tumour.sum() > 10
    plump = render(EPITHELIUM, od=0.1)[None]  # pale 9 um carcinoma nuclei stay tumour
    assert measure_cells(plump, p).tumour.mean() > 0.8
