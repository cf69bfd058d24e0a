"""Tiles are read per batch into one array and resized in one interpolation, not tile by tile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_her2 import open_slide
from napari_her2._sample_data import ihc_mosaic
from napari_her2.ihc.tissue import detect_tissue
from napari_her2.models.preprocess import resize_batch, resize_tile
from napari_her2.run import inference
from napari_her2.run.inference import read_tile, tile_runs
from napari_her2.slide import write_pyramid_tiff
from napari_her2.tiles.grid import make_grid


def float_resize(region: np.ndarray, size: int) -> np.ndarray:
    """The reference: float32 bilinear (antialiased when shrinking), rounded to uint8."""
    t = torch.from_numpy(np.ascontiguousarray(region)).permute(2, 0, 1)[None].float()
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                        antialias=region.shape[0] > size)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def resized_grid(tmp_path_factory):
    """A 0.3 µm/px slide cut into 64 px tiles at 0.5 µm/px: every tile is read at 107 px and
    resized."""
    path = tmp_path_factory.mktemp("resize") / "m.tif"
    write_pyramid_tiff(path, ihc_mosaic(rows=1, cols=2, gap=64), 0.3)
    slide = open_slide(path)
    grid = make_grid(slide, detect_tissue(slide), tile_size=64, target_mpp=0.5)
    assert grid.read_size != (64, 64) and grid.n_tissue > 8
    return slide, grid


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), side=st.integers(8, 48), size=st.integers(4, 40),
       seed=st.integers(0, 2**16))
def test_a_tile_resized_alone_or_in_a_batch_comes_out_the_same(n, side, size, seed):
    rng = np.random.default_rng(seed)
    regions = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    batch = resize_batch(regions, size)
    assert batch.shape == (n, size, size, 3) and batch.dtype == np.uint8
    for i in range(n):
        np.testing.assert_array_equal(batch[i], resize_tile(regions[i], size))
        diff = np.abs(batch[i].astype(int) - float_resize(regions[i], size))
        assert diff.max() <= 1, "the batch resize must agree with float maths up to rounding"


def test_resizing_is_skipped_when_the_read_size_is_the_tile_size():
    regions = np.zeros((3, 16, 16, 3), np.uint8)
    assert resize_batch(regions, 16) is regions


def test_tile_runs_split_rows_gaps_and_long_runs():
    rows = np.array([0, 0, 0, 0, 1, 1, 3])
    cols = np.array([2, 3, 4, 6, 0, 1, 1])
    assert tile_runs(rows, cols) == [(0, 3), (3, 4), (4, 6), (6, 7)]
    assert tile_runs(rows, cols, max_len=2) == [(0, 2), (2, 3), (3, 4), (4, 6), (6, 7)]
    assert tile_runs(rows[:0], cols[:0]) == []


def count_interpolations(monkeypatch) -> list[tuple[int, ...]]:
    """Record the input shape of every torch interpolation from now on."""
    calls: list[tuple[int, ...]] = []
    real = F.interpolate

    def spy(x, *args, **kwargs):
        calls.append(tuple(x.shape))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(F, "interpolate", spy)
    return calls


def test_a_batch_is_resized_in_one_interpolation(resized_grid, monkeypatch):
    slide, grid = resized_grid
    rows, cols = grid.tissue_tiles()
    calls = count_interpolations(monkeypatch)
    batch = inference._read_batch(slide, grid, rows[:8], cols[:8])
    assert batch.tiles.shape == (8, 64, 64, 3) and batch.tiles.dtype == np.uint8
    assert calls == [(8, 3, *grid.read_size)], "tiles must not be resized one by one"


def test_no_interpolation_when_tiles_are_read_at_their_size(tmp_path, monkeypatch):
    path = tmp_path / "m.tif"
    write_pyramid_tiff(path, ihc_mosaic(rows=1, cols=1, gap=64), 0.5)
    slide = open_slide(path)
    grid = make_grid(slide, detect_tissue(slide), tile_size=64, target_mpp=0.5)
    rows, cols = grid.tissue_tiles()
    calls = count_interpolations(monkeypatch)
    batch = inference._read_batch(slide, grid, rows[:6], cols[:6])
    assert grid.read_size == (64, 64) and batch.readable.all()
    assert calls == []


def test_batch_read_gives_the_tiles_read_one_by_one(resized_grid):
    slide, grid = resized_grid
    rows, cols = grid.tissue_tiles()
    batch = inference._read_batch(slide, grid, rows, cols)
    assert batch.readable.all()
    assert len(tile_runs(rows, cols)) < len(rows), "the test needs neighbouring tiles"
    for i in range(len(rows)):
        np.testing.assert_array_equal(batch.tiles[i], read_tile(slide, grid, rows[i], cols[i]))


def test_tiles_are_read_with_their_context(tmp_path):
    """With a margin, each tile comes with the slide around it: its middle is the tile read
    alone, its sides the neighbouring tiles' pixels, and beyond the slide's edge one flat
    colour, the mean of the slide's outermost pixels there; a run of neighbours and the
    one-by-one fallback read the same."""
    path = tmp_path / "m.tif"
    write_pyramid_tiff(path, ihc_mosaic(rows=1, cols=2, gap=64), 0.5)
    slide = open_slide(path)
    grid = make_grid(slide, detect_tissue(slide), tile_size=64, target_mpp=0.5)
    rows, cols = (a.ravel() for a in np.indices(grid.shape))  # every tile, edges included
    margin = inference.Margin(16, (16, 16))
    batch = inference._read_batch(slide, grid, rows, cols, margin)
    assert batch.tiles.shape == (len(rows), 96, 96, 3) and batch.tile_px == 64
    assert len(tile_runs(rows, cols)) < len(rows), "the test needs neighbouring tiles"
    h, w = slide.dimensions
    beyond_seen = 0
    for i, (r, c) in enumerate(zip(rows, cols)):
        y, x = int(r) * 64 - 16, int(c) * 64 - 16
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + 96, h), min(x + 96, w)
        inside = slide.read_region(0, y0, x0, y1 - y0, x1 - x0)
        np.testing.assert_array_equal(batch.tiles[i, y0 - y : y1 - y, x0 - x : x1 - x], inside)
        beyond = np.ones((96, 96), bool)
        beyond[y0 - y : y1 - y, x0 - x : x1 - x] = False
        if beyond.any():
            beyond_seen += 1
            colours = np.unique(batch.tiles[i][beyond], axis=0)
            assert len(colours) == 1, "beyond the edge is one flat colour"
            rim = np.concatenate([inside[[0, -1]].reshape(-1, 3), inside[:, [0, -1]].reshape(-1, 3)])
            assert np.all((colours[0] >= rim.min(axis=0)) & (colours[0] <= rim.max(axis=0)))
        np.testing.assert_array_equal(batch.tiles[i, 16:80, 16:80],
                                      read_tile(slide, grid, r, c))
        alone = np.empty((96, 96, 3), np.uint8)
        assert inference._read_region_into(slide, grid, int(r), int(c), alone, margin)
        inference.extend_edges(alone[None], (h, w), [(int(r) * 64, int(c) * 64)], (16, 16))
        np.testing.assert_array_equal(alone, batch.tiles[i])
    assert beyond_seen > 0, "the test needs tiles at the slide's edge"


def test_the_edge_of_a_tinted_scan_holds_no_cells(tmp_path):
    """A scan whose glass is tinted (as a slide scanner records it) reads white beyond its
    edge; read so, the cell scorer finds a row of nuclei along the edge. The runner fills the
    context beyond the edge with the edge's own colour, and the glass holds no cell."""
    from napari_her2.ihc.cell_scorer import DabCellScorer
    from napari_her2.ihc.tissue import TissueMask

    rng = np.random.default_rng(0)
    glass = np.clip(rng.normal((234, 233, 241), 1.5, (512, 512, 3)), 0, 255).astype(np.uint8)
    path = tmp_path / "glass.tif"
    write_pyramid_tiff(path, glass, 0.5)
    slide = open_slide(path)
    mask = np.ones((8, 8), bool)  # every tile scored, as a scan's glass border may be
    grid = make_grid(slide, TissueMask(mask, (64.0, 64.0), (32.0, 32.0)), tile_size=256,
                     target_mpp=0.5)
    scorer = DabCellScorer()
    margin = inference.context_margin(scorer, grid)
    assert grid.read_size == (256, 256) and margin.level == (margin.tile, margin.tile)
    rows, cols = (a.ravel() for a in np.indices(grid.shape))
    tiles = inference.read_tiles(slide, grid, rows, cols, margin)
    assert len(scorer.predict(tiles, context=margin.tile).cells) == 0
    m = margin.tile  # the slide read as it is, white beyond its edge
    white_tiles = np.stack([slide.read_region(0, int(r) * 256 - m, int(c) * 256 - m,
                                              256 + 2 * m, 256 + 2 * m)
                            for r, c in zip(rows, cols)])
    assert len(scorer.predict(white_tiles, context=margin.tile).cells) > 10


def test_the_margin_follows_the_predictor_and_the_level():
    from napari_her2.ihc.cell_scorer import DabCellScorer
    from napari_her2.ihc.scorer import DabMembraneScorer

    scorer = DabCellScorer()
    assert scorer.context_px == 98
    grid = type("G", (), {"read_size": (512, 384), "tile_size": 256})()  # read 2x, 1.5x
    assert inference.context_margin(scorer, grid) == inference.Margin(98, (196, 147))
    assert inference.context_margin(DabMembraneScorer(), grid) == inference.Margin()
