"""The inference generator: order, partial results, unreadable tiles, cancellation."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile

from napari_her2 import open_slide
from napari_her2._sample_data import ihc_mosaic
from napari_her2.errors import ScoringCancelled
from napari_her2.ihc.tissue import detect_tissue
from napari_her2.models.preprocess import resize_tile
from napari_her2.predict import Prediction
from napari_her2.run.inference import iter_scoring, read_tile, run_scoring
from napari_her2.slide import write_pyramid_tiff
from napari_her2.tiles.grid import make_grid


class MeanBrownPredictor:
    """A transparent stand-in model: class from the tile's mean darkness."""

    name = "mean-test"
    classes = ("0", "1+", "2+", "3+", "non-tumour")
    input_size = 64
    target_mpp = 1.0
    feature_names = ("darkness",)
    sha256 = "test"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, tiles: np.ndarray) -> Prediction:
        self.calls.append(len(tiles))
        dark = 1 - tiles.reshape(len(tiles), -1).mean(axis=1) / 255.0
        k = np.clip((dark * 10).astype(int), 0, 4)
        probs = np.eye(5, dtype=np.float32)[k]
        return Prediction(probs=probs, features=dark[:, None].astype(np.float32))

    def describe(self) -> dict:
        return {"name": self.name}


@pytest.fixture(scope="module")
def slide_and_grid(tmp_path_factory):
    path = tmp_path_factory.mktemp("inf") / "m.tif"
    write_pyramid_tiff(path, ihc_mosaic(rows=2, cols=2, gap=64), 0.5)
    slide = open_slide(path)
    grid = make_grid(slide, detect_tissue(slide), tile_size=64, target_mpp=1.0)
    return slide, grid


def test_yields_every_batch_in_row_major_order(slide_and_grid):
    slide, grid = slide_and_grid
    model = MeanBrownPredictor()
    gen = iter_scoring(slide, model, grid, batch_size=7)
    updates = []
    while True:
        try:
            updates.append(next(gen))
        except StopIteration as stop:
            results = stop.value
            break
    n = grid.n_tissue
    assert len(results) == n == updates[-1].done == updates[-1].total
    assert [u.stop - u.start for u in updates] == model.calls
    assert max(model.calls) == 7
    rows, cols = grid.tissue_tiles()
    np.testing.assert_array_equal(results.rows, rows)
    np.testing.assert_array_equal(results.cols, cols)
    assert results.readable.all()
    assert np.allclose(results.probs.sum(axis=1), 1)
    assert results.label_image()[rows, cols].min() >= 1


def test_same_results_with_threads_and_in_sync_mode(slide_and_grid, monkeypatch):
    slide, grid = slide_and_grid
    threaded = run_scoring(iter_scoring(slide, MeanBrownPredictor(), grid, batch_size=5))
    monkeypatch.setenv("NAPARI_HER2_SYNC", "1")
    sync = run_scoring(iter_scoring(slide, MeanBrownPredictor(), grid, batch_size=5))
    np.testing.assert_array_equal(threaded.probs, sync.probs)
    np.testing.assert_array_equal(threaded.features, sync.features)


def test_cancel_stops_within_one_batch(slide_and_grid):
    slide, grid = slide_and_grid
    cancel = threading.Event()
    model = MeanBrownPredictor()
    gen = iter_scoring(slide, model, grid, batch_size=4, cancel=cancel)
    next(gen)
    cancel.set()
    with pytest.raises(ScoringCancelled):
        next(gen)
    assert model.calls == [4], "no batch runs after cancel"


def test_closing_the_generator_stops_reader_threads(slide_and_grid):
    slide, grid = slide_and_grid
    before = {t.name for t in threading.enumerate()}
    gen = iter_scoring(slide, MeanBrownPredictor(), grid, batch_size=2)
    next(gen)
    gen.close()
    leftover = [t for t in threading.enumerate()
                if t.name.startswith("napari-her2-read") and t.name not in before]
    assert not leftover


def test_tile_read_matches_the_pyramid(slide_and_grid):
    slide, grid = slide_and_grid
    rows, cols = grid.tissue_tiles()
    r, c = int(rows[0]), int(cols[0])
    tile = read_tile(slide, grid, r, c)
    y, x = grid.level_origin(r, c)
    ref = slide.levels[grid.level][y : y + 64, x : x + 64].compute()
    assert tile.shape == (64, 64, 3)
    np.testing.assert_array_equal(tile[: ref.shape[0], : ref.shape[1]], ref)


def test_resize_tile_keeps_range_and_shape():
    region = np.zeros((150, 150, 3), np.uint8)
    region[:, 75:] = 255
    out = resize_tile(region, 100)
    assert out.shape == (100, 100, 3) and out.dtype == np.uint8
    assert out[:, :45].max() == 0 and out[:, 55:].min() == 255


def _corrupt_slide(tmp_path):
    """(slide, grid of 128 px tiles, its pixels before the damage, (row, col) of the 11th
    chunk, whose bytes are zeroed)."""
    path = tmp_path / "corrupt.tif"
    write_pyramid_tiff(path, ihc_mosaic(rows=1, cols=2, gap=64), 0.5, tile=128)
    clean = open_slide(path)
    whole = clean.read_region(0, 0, 0, *clean.dimensions)
    clean.close()
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[10], page.databytecounts[10]
        bad = divmod(10, -(-page.shape[1] // 128))
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00" * count)
    slide = open_slide(path)
    grid = make_grid(slide, detect_tissue(slide), tile_size=128, target_mpp=0.5, min_tissue=0.0)
    return slide, grid, whole, bad


def test_corrupt_tile_is_marked_unreadable_and_scoring_goes_on(tmp_path):
    slide, grid, _, (ty, tx) = _corrupt_slide(tmp_path)
    results = run_scoring(iter_scoring(slide, MeanBrownPredictor(), grid, batch_size=8))
    bad = (results.rows == ty) & (results.cols == tx)
    assert bad.sum() == 1
    assert not results.readable[bad].any()
    assert np.isnan(results.probs[bad]).all()
    assert results.readable[~bad].all()
    assert results.tile_outcomes()[int(np.flatnonzero(bad)[0])] == "unreadable"


def test_embeddings_are_kept_in_tile_order_with_gaps_for_unreadable_batches():
    from napari_her2.tiles.results import TileResults

    res = TileResults(classes=("0", "1+"), feature_names=(), grid_shape=(4, 4),
                      origin0=(0.0, 0.0), tile_size0=(8.0, 8.0))
    probs = np.full((2, 2), 0.5, np.float32)
    res.extend([0, 0], [0, 1], probs, np.zeros((2, 0)), [False, False])  # nothing readable
    res.extend([1, 1], [0, 1], probs, np.zeros((2, 0)), [True, True], np.ones((2, 3)))
    res.extend([2], [0], probs[:1], np.zeros((1, 0)), [False])
    assert res.embeddings.shape == (5, 3)
    assert np.isnan(res.embeddings[[0, 1, 4]]).all()
    assert (res.embeddings[2:4] == 1).all()


def test_each_update_carries_an_immutable_snapshot_of_its_batch(slide_and_grid):
    slide, grid = slide_and_grid
    gen = iter_scoring(slide, MeanBrownPredictor(), grid, batch_size=5)
    first = next(gen)
    kept = {k: np.array(getattr(first, k)) for k in ("rows", "cols", "labels", "probs")}
    assert len(first.rows) == first.stop - first.start == 5
    for name in ("rows", "cols", "labels", "probs"):
        arr = getattr(first, name)
        assert not arr.flags.writeable
        assert not np.shares_memory(arr, first.results.probs)
        assert not np.shares_memory(arr, first.results.rows)
        with pytest.raises(ValueError):
            arr[...] = 0
    timings_then = first.timings.to_dict()
    results = run_scoring(gen)  # the worker goes on extending its results
    assert len(results) > first.stop
    for name, arr in kept.items():
        np.testing.assert_array_equal(getattr(first, name), arr)
    assert first.timings.to_dict() == timings_then
    np.testing.assert_array_equal(first.labels, results.tile_labels()[: first.stop])
    np.testing.assert_array_equal(first.batch.tile_labels(), first.labels)
    results.probs[: first.stop] = -1  # even writing the live results leaves the update alone
    np.testing.assert_array_equal(first.probs, kept["probs"])


def test_the_first_batch_is_small_so_the_first_results_come_soon(slide_and_grid):
    from napari_her2.run.inference import FIRST_BATCH, batch_spans

    slide, grid = slide_and_grid
    model = MeanBrownPredictor()
    results = run_scoring(iter_scoring(slide, model, grid, batch_size=20))
    assert grid.n_tissue > 28 and model.calls[:2] == [8, 20]
    assert len(results) == grid.n_tissue

    assert FIRST_BATCH == 8
    assert batch_spans(70, 32) == [(0, 8), (8, 40), (40, 70)]
    assert batch_spans(5, 32) == [(0, 5)] and batch_spans(0, 32) == []
    assert batch_spans(12, 5) == [(0, 5), (5, 10), (10, 12)]  # batches of 8 or less: as asked
    for total, size in ((1, 1), (33, 32), (100, 7), (64, 64)):
        spans = batch_spans(total, size)
        assert spans[0][0] == 0 and spans[-1][1] == total
        assert all(a == b for (_, a), (b, _) in zip(spans[:-1], spans[1:]))  # no gap or overlap


def test_a_corrupt_chunk_whitens_only_itself_in_a_neighbours_context(tmp_path):
    """The tiles around a corrupt chunk stay readable and keep the rest of their context: only
    the chunk itself reads white there."""
    from napari_her2.run.inference import Margin, _read_region_into

    slide, grid, whole, (ty, tx) = _corrupt_slide(tmp_path)
    margin = Margin(32, (32, 32))
    out = np.empty((192, 192, 3), np.uint8)
    assert not _read_region_into(slide, grid, ty, tx, out, margin)  # the corrupt tile itself
    assert _read_region_into(slide, grid, ty, tx + 1, out, margin)  # its right-hand neighbour
    y0, x0 = ty * 128 - 32, (tx + 1) * 128 - 32
    np.testing.assert_array_equal(out[32:160, 32:160], whole[ty * 128 : ty * 128 + 128,
                                                             (tx + 1) * 128 : (tx + 2) * 128])
    assert (out[32:160, :32] == 255).all()  # the corrupt chunk's strip: white
    np.testing.assert_array_equal(out[:32, 32:160], whole[y0 : y0 + 32, x0 + 32 : x0 + 160])
