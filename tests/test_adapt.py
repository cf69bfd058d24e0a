"""What a scorer takes from the slide before its first tile: the stain vectors are estimated
from tissue tiles read at the scoring resolution, not from the low-resolution thumbnail."""

from __future__ import annotations

import numpy as np
import pytest

from napari_her2._sample_data import ihc_mosaic
from napari_her2.ihc.cell_scorer import DabCellScorer
from napari_her2.ihc.tissue import detect_tissue
from napari_her2.params import ScoringParams
from napari_her2.run import adapt
from napari_her2.run.pipeline import as_slide
from napari_her2.slide import write_pyramid_tiff
from napari_her2.tiles.grid import make_grid


@pytest.fixture(scope="module")
def slide_and_grid(tmp_path_factory):
    path = write_pyramid_tiff(tmp_path_factory.mktemp("adapt") / "s.tif",
                              ihc_mosaic(rows=2, cols=3, gap=64), 0.5)
    slide = as_slide(path)
    tissue = detect_tissue(slide)
    return slide, tissue, make_grid(slide, tissue, tile_size=256, target_mpp=0.5)


def test_the_stain_sample_is_spread_over_the_tissue_tiles(slide_and_grid):
    slide, _, grid = slide_and_grid
    rows, cols = grid.tissue_tiles()
    assert len(rows) > adapt.STAIN_SAMPLE_TILES  # the sample is a subset
    sample = adapt.stain_sample(slide, grid)
    assert sample is not None and sample.dtype == np.uint8
    assert sample.shape == (adapt.STAIN_SAMPLE_TILES, 256, 256, 3)
    assert len(adapt.stain_sample(slide, grid, n=3)) == 3


def test_a_scorer_adapts_to_the_tiles_and_a_grid_without_tissue_falls_back(
        slide_and_grid, monkeypatch):
    slide, tissue, grid = slide_and_grid
    seen: list[tuple[int, ...]] = []
    original = DabCellScorer.for_slide

    def spy(self, rgb_sample, tissue_mask=None):
        seen.append(np.asarray(rgb_sample).shape)
        return original(self, rgb_sample, tissue_mask)

    monkeypatch.setattr(DabCellScorer, "for_slide", spy)
    adapted = adapt.adapt_to_slide(DabCellScorer(), ScoringParams(), tissue, slide, grid)
    # the tiles' pixels, then the thumbnail's (read for the background only)
    n_tiles, n_thumb = adapt.STAIN_SAMPLE_TILES * 256 * 256, tissue.thumbnail[..., 0].size
    assert seen == [(n_tiles + n_thumb, 3)]
    assert adapted.slide_estimates()["stain_vectors"]["source"] == "slide"
    monkeypatch.setattr(adapt, "stain_sample", lambda slide, grid: None)
    adapt.adapt_to_slide(DabCellScorer(), ScoringParams(), tissue, slide, grid)
    assert seen[-1] == tissue.thumbnail.shape  # no readable tile: the thumbnail


def test_glass_in_the_thumbnail_sets_the_background_not_the_stains():
    """Tissue tiles without glass and a thumbnail whose glass reads grey (a dim scan): the
    background is that grey; the stain vectors come from the tiles alone."""
    from napari_her2.ihc.deconvolution import WHITE

    tiles = np.empty((2, 32, 32, 3), np.uint8)
    tiles[:] = (150, 110, 80)  # brown tissue, no glass
    thumbnail = np.full((40, 40, 3), 200, np.uint8)
    thumbnail[10:30, 10:30] = (150, 110, 80)
    pixels, mask = adapt.with_glass(tiles, thumbnail)
    assert pixels.shape == (2 * 32 * 32 + 40 * 40, 3) and mask.sum() == 2 * 32 * 32
    assert (pixels[mask] == (150, 110, 80)).all()
    assert DabCellScorer().for_slide(tiles).background == WHITE
    assert DabCellScorer().for_slide(pixels, mask).background == (200, 200, 200)


def test_a_scorer_that_does_not_adapt_reads_nothing(slide_and_grid, monkeypatch):
    slide, tissue, grid = slide_and_grid

    class Fixed:
        name = "fixed"

    def no_reads(*_a, **_k):
        raise AssertionError("read a tile for a scorer that does not adapt")

    monkeypatch.setattr(adapt, "stain_sample", no_reads)
    fixed = Fixed()
    assert adapt.adapt_to_slide(fixed, ScoringParams(), tissue, slide, grid) is fixed
