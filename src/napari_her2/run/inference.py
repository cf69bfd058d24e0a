"""Tiles -> model -> partial results, as a Qt-free generator.

:func:`iter_scoring` reads tiles ahead of the model in a thread pool (bounded prefetch),
runs the predictor batch by batch (the first batch small, so that the first results come
soon) and yields a :class:`ScoringUpdate` after every batch. The
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
from ..predict import CellColumns, ContextPredictor, TilePredictor
from ..slide import Slide
from ..threads import sync_mode
from ..tiles.cells import CellTable
from ..tiles.grid import TileGrid
from ..tiles.results import TileResults

log = logging.getLogger(__name__)

#: widest region (pixels at the grid level) read at once for a run of neighbouring tiles
MAX_RUN_WIDTH = 8192
#: most tiles in the first batch: the first overlay is drawn when it is done, and the cell
#: scorer takes about 17 ms per tile in its context on one core
FIRST_BATCH = 8


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
    tiles: np.ndarray  #: (n, tile_px + 2 context, ..., 3) uint8
    readable: np.ndarray
    read_seconds: float
    tile_px: int  #: side of a tile proper (its context left out)


@dataclass(frozen=True)
class Margin:
    """The context read around each tile: ``tile`` pixels at the tile resolution, ``level``
    (y, x) the same at the grid's pyramid level."""

    tile: int = 0
    level: tuple[int, int] = (0, 0)


def context_margin(predictor: object, grid: TileGrid) -> Margin:
    """The context a :class:`ContextPredictor` asks for around each tile (its
    ``context_px``, tile pixels; none for other predictors). Such a predictor gets every tile
    with that much of the surrounding slide on each side (beyond the slide's edge, the mean
    colour of that edge: :func:`extend_edges`) and ``context=`` the margin, and returns what
    lies inside the tile proper: a cell at a tile's edge is judged on its whole ring and with
    its neighbours in the next tile, whatever the tile size."""
    px = int(predictor.context_px) if isinstance(predictor, ContextPredictor) else 0
    if px <= 0:
        return Margin()
    rh, rw = grid.read_size
    return Margin(px, (round(px * rh / grid.tile_size), round(px * rw / grid.tile_size)))


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
    margin = context_margin(predictor, grid)
    batches = _read_batches(slide, grid, rows, cols, batch_spans(total, batch_size), workers,
                            prefetch, margin)
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
            probs, feats, emb, cells = _predict(predictor, batch, timings, embed, margin.tile)
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
             embed: Callable[[np.ndarray], np.ndarray] | None = None, context: int = 0):
    """(probs, features, embeddings, cells) of a batch; unreadable tiles get NaN rows.
    ``context``: pixels of context around each of the batch's tiles, handed to the
    predictor (see :func:`context_margin`)."""
    n_c, n_f = len(predictor.classes), len(predictor.feature_names)
    probs = np.full((len(batch.rows), n_c), np.nan, np.float32)
    feats = np.full((len(batch.rows), n_f), np.nan, np.float32)
    emb = cells = None
    ok = batch.readable
    if ok.any():
        t0 = time.perf_counter()
        tiles = batch.tiles[ok]
        if context and isinstance(predictor, ContextPredictor):
            pred = predictor.predict(tiles, context=context)
            tiles = tiles[:, context:-context, context:-context]  # the tiles proper
        else:
            pred = predictor.predict(tiles)
        embeddings = pred.embeddings if embed is None else embed(tiles)
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
    results.cells.extend(cells, batch.rows[ok], batch.cols[ok], (batch.tile_px, batch.tile_px),
                         results.geometry)


def batch_spans(total: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) of each batch of ``total`` tiles: a first one of at most
    :data:`FIRST_BATCH` tiles, so that the first overlay is drawn soon, then ``batch_size``
    each."""
    batch_size = max(1, batch_size)
    bounds = [0, *range(min(batch_size, FIRST_BATCH), total, batch_size), total]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _read_batches(slide, grid, rows, cols, spans, workers, prefetch,
                  margin: Margin) -> Generator[_Batch, None, None]:
    """Batches of tiles ``spans`` in order, read ``prefetch`` batches ahead in a thread
    pool."""
    if sync_mode() or workers <= 0:
        for a, b in spans:
            yield _read_batch(slide, grid, rows[a:b], cols[a:b], margin)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="napari-her2-read")
    pending: deque[Future] = deque()
    todo: Iterator[tuple[int, int]] = iter(spans)
    try:
        for a, b in todo:
            pending.append(pool.submit(_read_batch, slide, grid, rows[a:b], cols[a:b], margin))
            if len(pending) > prefetch:
                break
        while pending:
            batch = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                a, b = nxt
                pending.append(pool.submit(_read_batch, slide, grid, rows[a:b], cols[a:b],
                                           margin))
            yield batch
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _read_batch(slide: Slide, grid: TileGrid, rows: np.ndarray, cols: np.ndarray,
                margin: Margin = Margin()) -> _Batch:
    """Read one batch of tiles (each with ``margin`` of context) into one preallocated uint8
    array, then resize them together.

    Tiles next to each other in a grid row are read as one region (a run): row-major order
    keeps a batch's tiles mostly in a few runs, so each file chunk is pasted once per run
    rather than once per tile. A run that hits a corrupt chunk is read again tile by tile,
    so only the tiles on that chunk are marked unreadable."""
    t0 = time.perf_counter()
    n = len(rows)
    (rh, rw), (my, mx) = grid.read_size, margin.level
    regions = np.empty((n, rh + 2 * my, rw + 2 * mx, 3), np.uint8)
    readable = np.ones(n, bool)
    for start, stop in tile_runs(rows, cols, max(1, MAX_RUN_WIDTH // rw)):
        if not _read_run(slide, grid, rows, cols, start, stop, regions, margin):
            for i in range(start, stop):
                readable[i] = _read_region_into(slide, grid, int(rows[i]), int(cols[i]),
                                                regions[i], margin)
    if margin.tile:
        extend_edges(regions, slide.levels[grid.level].shape[:2],
                     [grid.level_origin(int(r), int(c)) for r, c in zip(rows, cols)],
                     margin.level)
    regions[~readable] = 255
    tiles = resize_batch(regions, grid.tile_size + 2 * margin.tile)
    return _Batch(rows, cols, tiles, readable, time.perf_counter() - t0, grid.tile_size)


def extend_edges(windows: np.ndarray, level_shape: tuple[int, int],
                 origins: list[tuple[int, int]], margin: tuple[int, int]) -> None:
    """Fill the part of each window (a tile at level ``origins[i]`` with ``margin`` of
    context) that lies beyond the slide's edge with the mean colour of the slide's outermost
    pixels in it, in place.

    The slide reads white there. Against the tinted glass of a scan, or tissue cut by the
    image's edge, white draws a line along the edge that a nucleus detector finds as a row of
    haematoxylin nuclei. A flat fill of the edge's own mean colour draws none, and holds
    nothing to find.
    """
    (my, mx), (height, width) = margin, windows.shape[1:3]
    for window, (y, x) in zip(windows, origins):
        top, left = max(my - y, 0), max(mx - x, 0)
        bottom = max(y - my + height - level_shape[0], 0)
        right = max(x - mx + width - level_shape[1], 0)
        if not (top or left or bottom or right):
            continue
        inside = window[top : height - bottom, left : width - right]
        rims = [rim for rim, beyond in ((inside[0], top), (inside[-1], bottom),
                                        (inside[:, 0], left), (inside[:, -1], right)) if beyond]
        colour = np.concatenate(rims).mean(axis=0).round().astype(np.uint8)
        window[:top], window[height - bottom :] = colour, colour
        window[:, :left], window[:, width - right :] = colour, colour


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
              stop: int, out: np.ndarray, margin: Margin = Margin()) -> bool:
    """Read tiles ``start:stop`` (one row, consecutive columns) and their context as one
    region into ``out``; False if a chunk of it is unreadable."""
    (rh, rw), (my, mx) = grid.read_size, margin.level
    y, x = grid.level_origin(int(rows[start]), int(cols[start]))
    try:
        band = slide.read_region(grid.level, y - my, x - mx, rh + 2 * my,
                                 rw * (stop - start) + 2 * mx, strict=True)
    except SlideReadError:
        return False
    for i in range(stop - start):
        out[start + i] = band[:, i * rw : (i + 1) * rw + 2 * mx]
    return True


def _read_region_into(slide: Slide, grid: TileGrid, row: int, col: int,
                      out: np.ndarray, margin: Margin = Margin()) -> bool:
    """Read one tile's region and its context (at the grid level, before resizing) into
    ``out``; where only the context is unreadable, the tile with the readable part of its
    context (an unreadable chunk white). False (and a warning) if the tile itself is
    unreadable."""
    (y, x), (rh, rw), (my, mx) = grid.level_origin(row, col), grid.read_size, margin.level
    window = (grid.level, y - my, x - mx, rh + 2 * my, rw + 2 * mx)
    try:
        out[...] = slide.read_region(*window, strict=True)
        return True
    except SlideReadError as err:
        error = err
    if my or mx:
        try:
            tile = slide.read_region(grid.level, y, x, rh, rw, strict=True)
            out[...] = slide.read_region(*window, strict=False)
            out[my : my + rh, mx : mx + rw] = tile
            return True
        except SlideReadError as err:
            error = err
    log.warning("tile (%d, %d) unreadable: %s", row, col, error)
    return False


def read_tiles(slide: Slide, grid: TileGrid, rows: np.ndarray, cols: np.ndarray,
               margin: Margin = Margin()) -> np.ndarray:
    """Tiles ``rows``, ``cols`` as the runner reads them, each with ``margin`` of context
    (white where unreadable): (n, tile_size + 2 margin.tile, ..., 3) uint8."""
    return _read_batch(slide, grid, np.asarray(rows), np.asarray(cols), margin).tiles


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
