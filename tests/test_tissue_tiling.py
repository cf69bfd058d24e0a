"""Tissue mask and tile grid on slides the tests build (real IHC pixels from scikit-image)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_her2 import MissingMppError, open_slide
from napari_her2._sample_data import ihc_mosaic
from napari_her2.ihc.tissue import TissueMask, TissueParams, detect_tissue, tissue_mask_from_rgb
from napari_her2.slide import write_pyramid_tiff
from napari_her2.tiles.grid import make_grid


@pytest.fixture(scope="module")
def mosaic():
    return ihc_mosaic(rows=2, cols=3, gap=128)


@pytest.fixture(scope="module")
def mosaic_slide(tmp_path_factory, mosaic):
    path = tmp_path_factory.mktemp("slides") / "mosaic.tif"
    write_pyramid_tiff(path, mosaic, 0.5, tile=256)
    return open_slide(path)


def test_tissue_mask_finds_the_pieces_and_not_the_glass(mosaic_slide):
    tissue = detect_tissue(mosaic_slide)
    assert tissue.mask.dtype == bool
    assert tissue.mpp == pytest.approx((8.0, 8.0))
    dy, dx = tissue.downsample
    # ground truth: the 2 x 3 pieces of 512 px placed with 128 px gaps of white glass
    truth = np.zeros(mosaic_slide.dimensions, bool)
    for r in range(2):
        for c in range(3):
            y, x = 128 + r * 640, 128 + c * 640
            truth[y : y + 512, x : x + 512] = True
    ys = (np.arange(tissue.mask.shape[0]) * dy + dy / 2).astype(int)
    xs = (np.arange(tissue.mask.shape[1]) * dx + dx / 2).astype(int)
    sampled = truth[np.ix_(ys.clip(0, truth.shape[0] - 1), xs.clip(0, truth.shape[1] - 1))]
    assert tissue.mask[sampled].mean() > 0.85, "most of each piece is tissue"
    assert tissue.mask[~sampled].mean() < 0.05, "the glass between pieces is not"


def test_tissue_morphology_is_in_microns():
    """The same scene at two scan resolutions gives the same mask area in µm²."""
    rgb = np.full((400, 400, 3), 255, np.uint8)
    rgb[100:300, 100:300] = (150, 90, 60)  # a brown square of 200 px
    rgb[20:24, 20:24] = (150, 90, 60)  # debris, 4 px
    fine = tissue_mask_from_rgb(rgb, mpp=1.0)
    coarse = tissue_mask_from_rgb(rgb[::2, ::2], mpp=2.0)
    assert fine.sum() * 1.0 == pytest.approx(coarse.sum() * 4.0, rel=0.05)
    assert not fine[20:24, 20:24].any(), "small debris must be dropped"


def test_a_small_field_of_tissue_is_not_dropped_as_debris():
    """A photographed field smaller than the debris size (here 150 x 150 µm, and its tissue
    78 x 78 µm, against 20,000 µm²) is what the image is of, not dust; a speck far from it is
    still dropped."""
    rgb = np.full((600, 600, 3), 255, np.uint8)
    rgb[290:, 290:] = (150, 90, 60)  # tissue at 0.25 µm/px, a little over a quarter
    rgb[5:9, 5:9] = (150, 90, 60)  # a 1 µm speck, 70 µm away
    mask = tissue_mask_from_rgb(rgb, mpp=0.25)
    assert mask[290:, 290:].mean() > 0.95
    assert not mask[5:9, 5:9].any()


def test_blank_slide_has_no_tissue():
    blank = np.full((300, 300, 3), 245, np.uint8)
    assert not tissue_mask_from_rgb(blank, mpp=4.0, params=TissueParams()).any()


def test_grid_reads_from_the_right_level_and_covers_the_slide(mosaic_slide):
    tissue = detect_tissue(mosaic_slide)
    grid = make_grid(mosaic_slide, tissue, tile_size=128, target_mpp=1.0)
    assert grid.level == 1  # 1.0 µm/px is exactly level 1 of a 0.5 µm/px slide
    assert grid.read_size == (128, 128)
    assert grid.tile_size0 == (256.0, 256.0)
    h0, w0 = mosaic_slide.dimensions
    assert grid.shape == (-(-h0 // 256), -(-w0 // 256))
    assert 0 < grid.n_tissue < grid.shape[0] * grid.shape[1]
    rows, cols = grid.tissue_tiles()
    order = rows.astype(int) * grid.shape[1] + cols
    assert np.all(np.diff(order) > 0), "tiles come in row-major order"


def test_grid_between_levels_resizes_from_the_finer_level(mosaic_slide):
    tissue = detect_tissue(mosaic_slide)
    grid = make_grid(mosaic_slide, tissue, tile_size=100, target_mpp=0.75)
    assert grid.level == 0
    assert grid.read_size == (150, 150)


def test_partial_edge_tiles_are_flagged_and_padding_counts_as_background(mosaic_slide):
    tissue = TissueMask(mask=np.ones((10, 10), bool), downsample=(100.0, 100.0), mpp=(50.0, 50.0))
    grid = make_grid(mosaic_slide, tissue, tile_size=300, target_mpp=0.5)
    h0, w0 = mosaic_slide.dimensions
    assert grid.partial[-1].all() == (h0 % 300 != 0)
    assert grid.tissue_fraction[0, 0] == pytest.approx(1.0)
    if h0 % 300:
        assert grid.tissue_fraction[-1, 0] < 1.0


def test_scoring_needs_mpp(tmp_path, mosaic):
    path = tmp_path / "nompp.tif"
    write_pyramid_tiff(path, mosaic[:512, :512], None)
    with pytest.warns(UserWarning):
        slide = open_slide(path)
    with pytest.raises(MissingMppError, match="nompp.tif"):
        detect_tissue(slide)


@pytest.mark.parametrize("edges", [[0, 10, 20, 30, 40, 50], [0, 7, 7, 20, 45, 55, 60], [3, 9, 12]])
def test_band_sums_match_slicing(edges):
    from napari_her2.tiles.grid import _band_sums

    a = (np.random.default_rng(0).random((50, 40)) > 0.5).astype(np.uint8)
    edges = np.array(edges)
    for axis in (0, 1):
        n = a.shape[axis]
        ref = [np.take(a, range(min(lo, n), min(hi, n)), axis=axis).sum(axis=axis)
               for lo, hi in zip(edges[:-1], edges[1:])]
        np.testing.assert_array_equal(_band_sums(a, edges, axis), np.stack(ref, axis=axis))


def test_field_that_is_all_tissue_is_all_tissue():
    """No glass at all (a field inside a tumour, a TMA core crop): Otsu has no background to
    find, so it must not split greyish, barely saturated tissue from stained tissue."""
    rng = np.random.default_rng(0)
    field = np.empty((256, 256, 3), np.float64)
    field[:, :128] = (150, 95, 50)  # DAB-brown tissue
    field[:, 128:] = (182, 182, 186)  # grey stroma: saturation 0.02, mean OD 0.14
    field = np.clip(field + rng.normal(0, 3, field.shape), 0, 255).astype(np.uint8)
    mask = tissue_mask_from_rgb(field, mpp=2.0)
    assert mask.mean() > 0.95


def test_pale_tissue_beside_glass_is_found_and_glass_is_not():
    rgb = np.full((200, 200, 3), 238, np.uint8)  # glass
    rgb[:, 100:] = (182, 182, 186)  # pale greyish tissue (saturation 0.02, mean OD 0.14)
    mask = tissue_mask_from_rgb(rgb, mpp=4.0)
    assert mask[:, 110:].mean() > 0.95 and mask[:, :90].mean() < 0.05


def test_real_field_without_glass_is_all_tissue(shared_data):
    """BCI 00249 is a 1024 px field that is all tissue (stroma, fat, glands)."""
    from skimage.io import imread

    rgb = imread(shared_data / "her2-ihc-bci" / "00249_test_2+.png")[..., :3]
    small = rgb.reshape(64, 16, 64, 16, 3).mean(axis=(1, 3)).astype(np.uint8)  # 8 um/px
    assert tissue_mask_from_rgb(small, mpp=8.0).mean() > 0.9


def _pale_field(path, rng):
    """A single-level PNG at 0.25 µm/px: glass on the left, on the right a pale tissue whose
    8 µm average is as faint and as grey as glass (mean OD about 0.05, saturation about 0.03)
    but which has a nucleus every 10 µm."""
    from skimage.draw import disk
    from skimage.io import imsave

    rgb = np.full((1600, 1600, 3), 240.0)  # glass, OD 0.026
    rgb[:, 800:] = (229, 229, 233)  # pale cytoplasm
    for y in range(20, 1600, 40):
        for x in range(820, 1600, 40):
            rr, cc = disk((y + rng.integers(-6, 7), x + rng.integers(-6, 7)), 10, shape=(1600, 1600))
            rgb[rr, cc] = (200, 200, 214)
    rgb += rng.normal(0, 1.0, rgb.shape)
    imsave(path, np.clip(rgb, 0, 255).astype(np.uint8), check_contrast=False)
    return open_slide(path, mpp=0.25)


def test_pale_tissue_as_faint_as_glass_is_found_by_its_texture(tmp_path):
    slide = _pale_field(tmp_path / "pale.png", np.random.default_rng(1))
    tissue = detect_tissue(slide)
    assert tissue.texture is not None and tissue.mpp == pytest.approx((8.0, 8.0))
    half = tissue.mask.shape[1] // 2
    assert tissue.mask[:, half + 2:].mean() > 0.95, "the pale tissue is found"
    assert tissue.mask[:, : half - 2].mean() < 0.05, "the glass is not"
    untextured = detect_tissue(slide, TissueParams(texture_od=1.0))
    assert untextured.mask[:, half + 2:].mean() < 0.5, "colour and density alone miss it"


def test_texture_is_read_only_where_the_pixels_resolve_nuclei(tmp_path):
    """A slide whose finest level is 2 µm/px (no nuclei to see) gets no texture plane."""
    slide = _pale_field(tmp_path / "pale.png", np.random.default_rng(1))
    coarse = open_slide(tmp_path / "pale.png", mpp=2.0)
    assert detect_tissue(coarse).texture is None
    assert detect_tissue(slide, TissueParams(texture_um=0.2)).texture is None


def test_block_stats_in_bands_match_the_whole(monkeypatch):
    """Mean colour and OD spread per block, computed a band at a time, equal the whole
    image's; the spread is the OD's standard deviation to first order."""
    from napari_her2.ihc import tissue as tissue_mod

    rng = np.random.default_rng(2)
    rgb = np.clip(200 + rng.normal(0, 6, (203, 70, 3)), 0, 255).astype(np.uint8)
    monkeypatch.setattr(tissue_mod, "BAND_ROWS", 20)  # 6 blocks of 3 rows per band
    mean, spread = tissue_mod._block_stats(rgb, 3)
    blocks = rgb[:201, :69].reshape(67, 3, 23, 3, 3)
    np.testing.assert_array_equal(mean, blocks.mean(axis=(1, 3)).astype(np.uint8))
    od = tissue_mod._mean_od(rgb[:201, :69]).reshape(67, 3, 23, 3).std(axis=(1, 3))
    np.testing.assert_allclose(spread, od, rtol=0.05, atol=2e-4)
    grey = rgb[:201, :69].astype(np.float64).mean(axis=2).reshape(67, 3, 23, 3)
    exact = grey.std(axis=(1, 3)) / (grey.mean(axis=(1, 3)) * np.log(10))
    np.testing.assert_allclose(spread, exact, rtol=1e-5)


@pytest.mark.parametrize("core", ["0_9b0f64d1-6785-49d9-b279-004b2deb8478",
                                  "2_726fa489-3deb-4d06-ae5c-8f20bd3f3025",
                                  "1_f8a2cea0-aaed-4995-ae30-d9de475d3821"])
def test_a_real_core_is_found_whole_and_the_glass_around_it_is_not(shared_data, core):
    """TMA core 0_9b0f64d1 (HER2 0) is pale in one half: its colour is as faint as the glass,
    and before its texture was read half the core was missing and glass was taken. The glass
    around 2_726fa489 and 1_f8a2cea0 is tinted as saturated as the threshold: before its
    uniformity was read, 98% and 96% of those images were tissue."""
    slide = open_slide(shared_data / "her2-ihc-tma" / f"{core}.jpg", mpp=0.25)
    mask = detect_tissue(slide).mask
    n = mask.shape[0]
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - n / 2, xx - n / 2) / (n / 2)
    assert mask[r < 0.6].mean() > 0.97, "the middle of the core is tissue"
    assert mask[r > 1.15].mean() < 0.02, "the corners are glass"


def _tinted_glass_field(path, rng):
    """A single-level PNG at 0.25 µm/px: a scanner's bluish glass (234, 233, 241: saturation
    0.034, against a threshold of 0.04-0.06) whose tint drifts by a few levels over tens of
    microns, as JPEG and sensor noise make it, with a tissue piece in the middle."""
    from skimage.io import imsave

    drift = ndi.gaussian_filter(rng.normal(0, 1, (1600, 1600)), 24)
    rgb = np.empty((1600, 1600, 3))
    rgb[...] = (234, 233, 241)
    rgb[..., 2] += 4 * drift / drift.std()  # blue drifts by 4 levels: saturation 0.02-0.05
    yy, xx = np.mgrid[:1600, :1600]
    piece = np.hypot(yy - 800, xx - 800) < 400
    rgb[piece] = (205, 190, 200)
    for y in range(420, 1200, 40):
        for x in range(420, 1200, 40):
            if np.hypot(y - 800, x - 800) < 380:
                rgb[y - 8 : y + 8, x - 8 : x + 8] = (150, 140, 180)
    rgb += rng.normal(0, 1.0, rgb.shape)
    imsave(path, np.clip(rgb, 0, 255).astype(np.uint8), check_contrast=False)
    return open_slide(path, mpp=0.25), piece[::32, ::32]


def test_tinted_glass_is_not_tissue(tmp_path):
    """Glass whose tint crosses the saturation threshold in specks is still glass: it is as
    uniform as glass. Without that rule the closing joined the specks into a mask over most
    of the glass (two of the shared cores were 96-98% tissue)."""
    slide, piece = _tinted_glass_field(tmp_path / "tinted.png", np.random.default_rng(3))
    mask = detect_tissue(slide).mask
    assert mask.shape == piece.shape
    far = ~ndi.binary_dilation(piece, iterations=4)
    assert mask[piece].mean() > 0.95 and mask[far].mean() < 0.02
    specks = detect_tissue(slide, TissueParams(glass_texture_od=0.0)).mask
    assert specks[far].mean() > 0.2, "the test needs glass that crosses the threshold"

