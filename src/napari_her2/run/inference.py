"""Tiles -> model -> partial results, as a Qt-free generator.

:func:`iter_scoring` reads tiles ahead of the model in a thread pool (bounded prefetch),
runs the predictor batch by batch and yields a :class:`ScoringUpdate` after every batch. The
napari widget, the CLI, batch mode and the tests all drive this same generator; cancelling
(an event, or simply closing the generator) stops it within one batch.

Set ``NAPARI_HER2_SYNC=1`` to read tiles in the calling thread (no pools, no workers): the
switch for debugging with pdb or a profiler.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ScoringCancelled, SlideReadError
from ..models.preprocess import resize_batch, resize_tile
from ..predict import CellColumns, TilePredictor
from ..slide import Slide
from ..threads import sync_mode
from ..tiles.cells import CellTable
from ..tiles.grid import TileGrid
from ..tiles.results import TileResults

log = logging.getLogger(__name__)

#: widest region (pixels at the grid level) read at once for a run of neighbouring tiles
MAX_RUN_WIDTH = 8192


@dataclass
class Timings:
    """Seconds: reading tiles (summed over reader threads), in the model, waiting for reads
    (I/O not hidden behind compute), and wall-clock total."""

    read: float = 0.0
    infer: float = 0.0
    wait: float = 0.0
    total: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class ScoringUpdate:
    """One finished batch and the progress so far.

    ``batch`` is an immutable snapshot of this batch's tiles (its own read-only arrays, which
    the worker never writes again): paint from it, or from ``rows``, ``cols``, ``labels`` and
    ``probs``. ``results`` is the live object the worker goes on extending (tiles
    ``start:stop`` are this batch); read it only once the generator is finished.
    ``timings`` is a copy taken when the batch finished.
    """

    results: TileResults
    start: int
    stop: int
    done: int
    total: int
    timings: Timings = field(default_factory=Timings)
    batch: TileResults | None = None
    labels: np.ndarray | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def rows(self) -> np.ndarray:
        return self._batch().rows

    @property
    def cols(self) -> np.ndarray:
        return self._batch().cols

    @property
    def probs(self) -> np.ndarray:
        return self._batch().probs

    def _batch(self) -> TileResults:
        if self.batch is None:
            raise ValueError("this update carries no batch snapshot")
        return self.batch


def _frozen(arr: np.ndarray) -> np.ndarray:
    """A read-only copy (nothing else holds it, so nobody can change it)."""
    out = np.array(arr, copy=True)
    out.flags.writeable = False
    return out


def snapshot_batch(results: TileResults, start: int, stop: int) -> TileResults:
    """Tiles ``start:stop`` of ``results`` as a TileResults of read-only copies."""
    emb = results.embeddings
    return replace(
        results,
        rows=_frozen(results.rows[start:stop]),
        cols=_frozen(results.cols[start:stop]),
        probs=_frozen(results.probs[start:stop]),
        features=_frozen(results.features[start:stop]),
        readable=_frozen(results.readable[start:stop]),
        embeddings=None if emb is None else _frozen(emb[start:stop]),
        cells=None,  # the live table goes on growing; the finished results carry the cells
    )


def make_update(results: TileResults, start: int, total: int, timings: Timings) -> ScoringUpdate:
    """The update for the batch ``start:len(results)``, with its snapshot and labels."""
    stop = len(results)
    batch = snapshot_batch(results, start, stop)
    return ScoringUpdate(results, start, stop, stop, total, replace(timings), batch,
                         _frozen(batch.tile_labels()))


@dataclass
class _Batch:
    rows: np.ndarray
    cols: np.ndarray
    tiles: np.ndarray
    readable: np.ndarray
    read_seconds: float


def new_results(predictor: TilePredictor, grid: TileGrid,
                image_shape0: tuple[int, int] | None = None) -> TileResults:
    """Empty results for a grid, ready to be filled batch by batch."""
    return TileResults(
        classes=tuple(predictor.classes),
        feature_names=tuple(predictor.feature_names),
        grid_shape=grid.shape,
        origin0=(0.0, 0.0),
        tile_size0=grid.tile_size0,
        image_shape0=image_shape0,
    )


def iter_scoring(
    slide: Slide,
    predictor: TilePredictor,
    grid: TileGrid,
    *,
    batch_size: int = 32,
    workers: int = 2,
    prefetch: int = 2,
    cancel: threading.Event | None = None,
    embed: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Generator[ScoringUpdate, None, TileResults]:
    """Score every tissue tile of ``grid``; yield after each batch, return the results.

    Unreadable tiles (a corrupt chunk) are kept with NaN probabilities and readable=False.
    ``embed``: computes the tiles' embeddings (uint8 tiles -> (n, D) float32) instead of the
    predictor, for a MIL model trained over another encoder than the tile model.
    Raises :class:`ScoringCancelled` when ``cancel`` is set.
    """
    rows, cols = grid.tissue_tiles()
    results = new_results(predictor, grid, slide.dimensions)
    total = len(rows)
    timings = Timings()
    t_start = time.perf_counter()
    starts = list(range(0, total, max(1, batch_size)))
    batches = _read_batches(slide, grid, rows, cols, starts, batch_size, workers, prefetch)
    try:
        while True:
            t_wait = time.perf_counter()
            batch = next(batches, None)
            timings.wait += time.perf_counter() - t_wait
            if batch is None:
                break
            if cancel is not None and cancel.is_set():
                raise ScoringCancelled(f"{slide.name}: scoring cancelled")
            timings.read += batch.read_seconds
            probs, feats, emb, cells = _predict(predictor, batch, timings, embed)
            start = len(results)
            results.extend(batch.rows, batch.cols, probs, feats, batch.readable, emb)
            if cells is not None:
                _add_cells(results, cells, batch)
            timings.total = time.perf_counter() - t_start
            yield make_update(results, start, total, timings)
    finally:
        batches.close()
    timings.total = time.perf_counter() - t_start
    return results


def _predict(predictor: TilePredictor, batch: _Batch, timings: Timings,
             embed: Callable[[np.ndarray], np.ndarray] | None = None):
    """(probs, features, embeddings, cells) of a batch; unreadable tiles get NaN rows."""
    n_c, n_f = len(predictor.classes), len(predictor.feature_names)
    probs = np.full((len(batch.rows), n_c), np.nan, np.float32)
    feats = np.full((len(batch.rows), n_f), np.nan, np.float32)
    emb = cells = None
    ok = batch.readable
    if ok.any():
        t0 = time.perf_counter()
        pred = predictor.predict(batch.tiles[ok])
        embeddings = pred.embeddings if embed is None else embed(batch.tiles[ok])
        timings.infer += time.perf_counter() - t0
        probs[ok] = pred.probs
        if n_f:
            feats[ok] = pred.features
        if embeddings is not None:
            emb = np.full((len(batch.rows), embeddings.shape[1]), np.nan, np.float32)
            emb[ok] = embeddings
        cells = pred.cells
    return probs, feats, emb, cells


def _add_cells(results: TileResults, cells: CellColumns, batch: _Batch) -> None:
    """Place a batch's cells (indexed over its readable tiles) on the slide."""
    if results.cells is None:
        results.cells = CellTable()
    ok = batch.readable
    results.cells.extend(cells, batch.rows[ok], batch.cols[ok], batch.tiles.shape[1:3],
                         results.geometry)


def _read_batches(slide, grid, rows, cols, starts, batch_size, workers, prefetch) -> Generator[_Batch, None, None]:
    """Batches of tiles in order, read ``prefetch`` batches ahead in a thread pool."""
    if sync_mode() or workers <= 0:
        for s in starts:
            yield _read_batch(slide, grid, rows[s : s + batch_size], cols[s : s + batch_size])
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="napari-her2-read")
    pending: deque[Future] = deque()
    todo: Iterator[int] = iter(starts)
    try:
        for s in todo:
            pending.append(pool.submit(_read_batch, slide, grid, rows[s : s + batch_size],
                                       cols[s : s + batch_size]))
            if len(pending) > prefetch:
                break
        while pending:
            batch = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(_read_batch, slide, grid, rows[nxt : nxt + batch_size],
                                           cols[nxt : nxt + batch_size]))
            yield batch
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _read_batch(slide: Slide, grid: TileGrid, rows: np.ndarray, cols: np.ndarray) -> _Batch:
    """Read one batch of tiles into one preallocated uint8 array, then resize them together.

    Tiles next to each other in a grid row are read as one region (a run): row-major order
    keeps a batch's tiles mostly in a few runs, so each file chunk is pasted once per run
    rather than once per tile. A run that hits a corrupt chunk is read again tile by tile,
    so only the tiles on that chunk are marked unreadable."""
    t0 = time.perf_counter()
    n = len(rows)
    rh, rw = grid.read_size
    regions = np.empty((n, rh, rw, 3), np.uint8)
    readable = np.ones(n, bool)
    for start, stop in tile_runs(rows, cols, max(1, MAX_RUN_WIDTH // rw)):
        if not _read_run(slide, grid, rows, cols, start, stop, regions):
            for i in range(start, stop):
                readable[i] = _read_region_into(slide, grid, int(rows[i]), int(cols[i]),
                                                regions[i])
    regions[~readable] = 255
    tiles = resize_batch(regions, grid.tile_size)
    return _Batch(rows, cols, tiles, readable, time.perf_counter() - t0)


def tile_runs(rows: np.ndarray, cols: np.ndarray,
              max_len: int | None = None) -> list[tuple[int, int]]:
    """[start, stop) index ranges of tiles that follow each other in one grid row, each at
    most ``max_len`` tiles long."""
    if len(rows) == 0:
        return []
    r, c = np.asarray(rows), np.asarray(cols)
    breaks = np.flatnonzero((np.diff(r) != 0) | (np.diff(c) != 1)) + 1
    bounds = [0, *breaks.tolist(), len(r)]
    step = max_len or len(r)
    return [(s, min(s + step, stop)) for start, stop in zip(bounds[:-1], bounds[1:])
            for s in range(start, stop, step)]


def _read_run(slide: Slide, grid: TileGrid, rows: np.ndarray, cols: np.ndarray, start: int,
              stop: int, out: np.ndarray) -> bool:
    """Read tiles ``start:stop`` (one row, consecutive columns) as one region into ``out``;
    False if a chunk of it is unreadable."""
    rh, rw = grid.read_size
    y, x = grid.level_origin(int(rows[start]), int(cols[start]))
    k = stop - start
    try:
        band = slide.read_region(grid.level, y, x, rh, rw * k, strict=True)
    except SlideReadError:
        return False
    out[start:stop] = band.reshape(rh, k, rw, 3).transpose(1, 0, 2, 3)
    return True


def _read_region_into(slide: Slide, grid: TileGrid, row: int, col: int,
                      out: np.ndarray) -> bool:
    """Read one tile's region (at the grid level, before resizing) into ``out``; False (and a
    warning) if it is unreadable."""
    y, x = grid.level_origin(row, col)
    rh, rw = grid.read_size
    try:
        out[...] = slide.read_region(grid.level, y, x, rh, rw, strict=True)
    except SlideReadError as err:
        log.warning("tile (%d, %d) unreadable: %s", row, col, err)
        return False
    return True


def read_tile(slide: Slide, grid: TileGrid, row: int, col: int) -> np.ndarray | None:
    """One tile at the grid's resolution, (tile_size, tile_size, 3); None if unreadable."""
    region = np.empty((*grid.read_size, 3), np.uint8)
    if not _read_region_into(slide, grid, row, col, region):
        return None
    return resize_tile(region, grid.tile_size)


def run_scoring(gen: Generator[ScoringUpdate, None, TileResults]) -> TileResults:
    """Drain a scoring generator and return its results (for scripts and the CLI)."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
