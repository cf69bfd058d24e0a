"""Chunked level readers: region reads assembled from a file's own tiles, with a small cache.

A :class:`ChunkedLevel` knows how to decode one chunk (a TIFF tile or strip, a DICOM frame)
and turns any pixel region into chunk decodes, so a region read costs about what the region
costs. Decoded chunks go through a bounded LRU cache shared by the levels of one slide: tiles
read in row order then decode each wide chunk (an NDPI restart-interval strip, a TIFF strip)
once instead of once per tile. ``LevelArray`` exposes a level to dask.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

#: background value of pixels outside the image or in missing chunks (brightfield white)
FILL_VALUE = 255


class ChunkDecodeError(Exception):
    """One chunk of a level could not be read or decoded."""


def _close_all(fd: int, others: tuple) -> None:
    for other in others:
        other.close()
    try:
        os.close(fd)
    except OSError:
        pass


class FileHandle:
    """An open file for positional reads from any thread.

    It stays open as long as anything that reads through it exists (level readers, the dask
    arrays built on them), and closes when the last of them goes, or on ``close()``.
    ``others`` are objects closed with it (the parsed TIFF, the chunk cache).
    """

    def __init__(self, path, others: tuple = (), max_read: int = 2**28) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        self._size = os.fstat(self.fd).st_size
        self.max_read = max_read
        self._lock = threading.RLock()
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_all, self.fd, others)

    def pread(self, length: int, offset: int) -> bytes:
        """Bytes at ``offset``; ChunkDecodeError for a span that is negative, empty, past the
        end of the file or larger than ``max_read`` (a damaged offset or byte-count table),
        on a failed read, and once closed (the descriptor number may by then belong to
        another file)."""
        problem = chunk_span_problem(offset, length, self._size, self.max_read)
        if problem:
            raise ChunkDecodeError(problem)
        with self._lock:
            if self._closed:
                raise ChunkDecodeError(f"{self.path}: the slide is closed")
            try:
                data = os.pread(self.fd, length, offset)
            except (OSError, OverflowError, ValueError) as err:
                raise ChunkDecodeError(f"cannot read {length} bytes at byte {offset} "
                                       f"({err.__class__.__name__})") from err
        if len(data) != length:
            raise ChunkDecodeError(f"short read: {len(data)} of {length} bytes at byte {offset}")
        return data

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._finalizer()


def chunk_span_problem(offset: int, length: int, file_size: int, max_bytes: int) -> str | None:
    """Why the stored span of a chunk cannot be right (None when it can)."""
    if offset < 0 or length < 0:
        return f"damaged chunk table: offset {offset}, byte count {length}"
    if length == 0:
        return f"damaged chunk table: empty chunk at byte {offset}"
    if offset + length > file_size:
        return (f"damaged or truncated file: a chunk of {length} bytes at byte {offset} lies "
                f"past the end ({file_size} bytes)")
    if length > max_bytes:
        return f"damaged chunk table: a chunk of {length} bytes (limit {max_bytes})"
    return None


class ChunkCache:
    """Thread-safe LRU cache of decoded chunks, bounded in bytes.

    A chunk put with the number of its pixels still to be read (``left``) leaves the cache
    once reads have used them all (:meth:`consume`): a scan in tile order then keeps only the
    chunks it has not finished, and their memory is reused at once instead of the cache
    growing through fresh pages (first use of a page costs about a decode's worth of time
    per chunk on some machines).
    """

    def __init__(self, max_bytes: int = 96 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._left: dict[tuple, int] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self._pending: dict[tuple, threading.Event] = {}

    def claim(self, key: tuple) -> tuple[bool, threading.Event]:
        """(True, event) if the caller should decode ``key``; else (False, the event that is
        set when the thread decoding it is done)."""
        with self._lock:
            event = self._pending.get(key)
            if event is not None:
                return False, event
            event = self._pending[key] = threading.Event()
            return True, event

    def release(self, key: tuple) -> None:
        with self._lock:
            event = self._pending.pop(key, None)
        if event is not None:
            event.set()

    def in_flight(self, key: tuple) -> bool:
        with self._lock:
            return key in self._pending

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            arr = self._items.get(key)
            if arr is not None:
                self._items.move_to_end(key)
            return arr

    def put(self, key: tuple, arr: np.ndarray, left: int | None = None) -> None:
        """Keep ``arr``; ``left``: pixels of it reads will use (None: keep until evicted)."""
        if arr.nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = arr
            if left is not None:
                self._left[key] = left
            self._bytes += arr.nbytes
            while self._bytes > self.max_bytes and self._items:
                self._drop(next(iter(self._items)))

    def consume(self, key: tuple, pixels: int) -> None:
        """A read used ``pixels`` of chunk ``key``: drop it once all are used."""
        with self._lock:
            left = self._left.get(key)
            if left is None:
                return
            if left - pixels > 0:
                self._left[key] = left - pixels
            else:
                self._drop(key)

    def _drop(self, key: tuple) -> None:
        arr = self._items.pop(key)
        self._left.pop(key, None)
        self._bytes -= arr.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._left.clear()
            self._bytes = 0

    close = clear


@dataclass
class ChunkedLevel:
    """One image (pyramid level or associated image) stored as a grid of chunks.

    decode(iy, ix) returns the chunk at grid position (iy, ix) as (h, w, 3) uint8, h and w at
    most the chunk size (edge chunks may be cropped or padded; extra pixels are ignored), or
    None where the file stores no data for it. It raises ChunkDecodeError on corrupt data.

    decode_into(iy, ix, target), where a format can, decodes straight into ``target`` (a
    C-contiguous view of a read's output holding exactly the chunk's image pixels); False
    where the file stores no data (the caller paints background).
    """

    key: str
    shape: tuple[int, int]
    chunk: tuple[int, int]
    decode: Callable[[int, int], np.ndarray | None]
    cache: ChunkCache | None = None
    decode_into: Callable[[int, int, np.ndarray], bool] | None = None

    @property
    def grid(self) -> tuple[int, int]:
        return (math.ceil(self.shape[0] / self.chunk[0]), math.ceil(self.shape[1] / self.chunk[1]))

    def get_chunk(self, iy: int, ix: int) -> np.ndarray | None:
        """The decoded chunk; with a cache, a chunk two threads want is decoded once."""
        if self.cache is None:
            return self.decode(iy, ix)
        ckey = (self.key, iy, ix)
        while True:
            hit = self.cache.get(ckey)
            if hit is not None:
                return hit
            claim, event = self.cache.claim(ckey)
            if claim:
                break
            event.wait()  # another thread is decoding it; then take it from the cache
            if self.cache.get(ckey) is None and not self.cache.in_flight(ckey):
                return self.decode(iy, ix)  # evicted already, or its decode failed
        try:
            arr = self.decode(iy, ix)
            if arr is not None:
                self.cache.put(ckey, arr, self._area(iy, ix))
            return arr
        finally:
            self.cache.release(ckey)

    def _area(self, iy: int, ix: int) -> int:
        """Image pixels of chunk (iy, ix) (edge chunks are cut by the image edge)."""
        ch, cw = self.chunk
        return (min(ch, self.shape[0] - iy * ch) * min(cw, self.shape[1] - ix * cw))

    def read_region(
        self, y: int, x: int, h: int, w: int, *, strict: bool = True, workers: int = 1
    ) -> np.ndarray:
        """Pixels [y, y+h) x [x, x+w) as (h, w, 3) uint8; outside the image is white.

        strict: raise ChunkDecodeError on a corrupt chunk; otherwise fill it white and log.
        workers: threads that decode the region's chunks into the output (a whole level or a
        thumbnail-sized region; reads of a few chunks stay in the calling thread).

        Each chunk is decoded once and copied once, into the preallocated output. A chunk the
        region covers whole bypasses the cache (nothing else needs it); a chunk it covers in
        part (a wide NDPI strip, a tile across the region's edge) is cached for the
        neighbouring reads. A region that is exactly one chunk is the decoded chunk itself.
        """
        H, W = self.shape
        bounds = (max(y, 0), max(x, 0), min(y + h, H), min(x + w, W))
        y0, x0, y1, x1 = bounds
        if y0 >= y1 or x0 >= x1:
            return np.full((h, w, 3), FILL_VALUE, np.uint8)
        ch, cw = self.chunk
        cells = [(iy, ix) for iy in range(y0 // ch, (y1 - 1) // ch + 1)
                 for ix in range(x0 // cw, (x1 - 1) // cw + 1)]
        if len(cells) == 1 and (y, x, h, w) == (y0, x0, y1 - y0, x1 - x0):
            whole = self._whole_chunk(*cells[0], (y, x, h, w), strict)
            if whole is not None:
                return whole
        out = np.empty((h, w, 3), np.uint8)
        _fill_outside(out, (y, x), bounds)
        if workers > 1 and len(cells) >= 2 * workers:
            self._paste_shared(out, cells, (y, x), bounds, strict, workers)
        else:
            self._paste_all(out, cells, (y, x), bounds, strict)
        return out

    def _paste_shared(self, out, cells, origin, bounds, strict, workers: int) -> None:
        """Paste ``cells`` from ``workers`` threads (the caller's among them) that each take
        the next chunk when done with one, so a thread slowed by other work on its core takes
        fewer; a chunk another read is decoding right now is left for the end."""
        lock = threading.Lock()
        todo = iter(cells)

        def work() -> None:
            later = []
            while True:
                with lock:
                    cell = next(todo, None)
                if cell is None:
                    break
                iy, ix = cell
                if self.cache is not None and self.cache.in_flight((self.key, iy, ix)):
                    later.append(cell)
                else:
                    self._paste(out, iy, ix, origin, bounds, strict)
            for iy, ix in later:
                self._paste(out, iy, ix, origin, bounds, strict)

        with ThreadPoolExecutor(workers - 1, thread_name_prefix="napari-her2-decode") as pool:
            helpers = [pool.submit(work) for _ in range(workers - 1)]
            try:
                work()
            except BaseException:
                with lock:  # the helpers stop after the chunk they are on
                    todo = iter(())
                raise
            for helper in helpers:
                helper.result()

    def _covers(self, iy: int, ix: int, bounds: tuple[int, int, int, int]) -> bool:
        """True when ``bounds`` contains every image pixel of chunk (iy, ix)."""
        ch, cw = self.chunk
        cy, cx = iy * ch, ix * cw
        return (bounds[0] <= cy and bounds[1] <= cx and min(cy + ch, self.shape[0]) <= bounds[2]
                and min(cx + cw, self.shape[1]) <= bounds[3])

    def _fetch(self, iy: int, ix: int, covered: bool) -> np.ndarray | None:
        if covered and self.cache is not None:
            hit = self.cache.get((self.key, iy, ix))
            return hit if hit is not None else self.decode(iy, ix)
        return self.get_chunk(iy, ix)

    def _whole_chunk(self, iy: int, ix: int, box: tuple[int, int, int, int],
                     strict: bool) -> np.ndarray | None:
        """The decoded chunk when the region is exactly chunk (iy, ix); else None."""
        ch, cw = self.chunk
        y, x, h, w = box
        if (y, x) != (iy * ch, ix * cw) or (h, w) != (min(ch, self.shape[0] - y),
                                                      min(cw, self.shape[1] - x)):
            return None
        if self.cache is not None and self.cache.get((self.key, iy, ix)) is not None:
            return None  # a cached chunk is shared: copy it through the general path
        try:
            arr = self.decode(iy, ix)
        except ChunkDecodeError:
            if strict:
                raise
            log.warning("%s: chunk (%d, %d) is unreadable; shown as background", self.key, iy, ix)
            return np.full((h, w, 3), FILL_VALUE, np.uint8)
        if arr is None:
            return np.full((h, w, 3), FILL_VALUE, np.uint8)
        if arr.shape != (h, w, 3) or not arr.flags.writeable or not arr.flags.c_contiguous:
            return np.array(arr[:h, :w, :3], order="C")  # a copy the caller owns
        return arr

    def _decode_into(self, iy: int, ix: int, target: np.ndarray, strict: bool) -> bool:
        """Decode chunk (iy, ix) straight into ``target``; False: copy it from the cache."""
        decode_into = self.decode_into
        if decode_into is None or (self.cache is not None
                                   and self.cache.get((self.key, iy, ix)) is not None):
            return False
        try:
            stored = decode_into(iy, ix, target)
        except ChunkDecodeError:
            if strict:
                raise
            log.warning("%s: chunk (%d, %d) is unreadable; shown as background", self.key, iy, ix)
            stored = False
        if not stored:
            target[...] = FILL_VALUE
        return True

    def _paste_all(self, out, cells, origin, bounds, strict) -> None:
        """Paste ``cells``; a chunk another thread is decoding right now is left for last, so
        that two threads reading neighbouring regions decode instead of waiting."""
        later = []
        for iy, ix in cells:
            if self.cache is not None and self.cache.in_flight((self.key, iy, ix)):
                later.append((iy, ix))
            else:
                self._paste(out, iy, ix, origin, bounds, strict)
        for iy, ix in later:
            self._paste(out, iy, ix, origin, bounds, strict)

    def _paste(self, out, iy, ix, origin, bounds, strict) -> None:
        ch, cw = self.chunk
        y0, x0, y1, x1 = bounds
        cy, cx = iy * ch, ix * cw
        sy0, sx0 = max(y0, cy), max(x0, cx)
        sy1, sx1 = min(y1, cy + ch), min(x1, cx + cw)
        target = out[sy0 - origin[0] : sy1 - origin[0], sx0 - origin[1] : sx1 - origin[1]]
        covered = self._covers(iy, ix, bounds)
        if covered and self.decode_into is not None and target.flags.c_contiguous:
            if self._decode_into(iy, ix, target, strict):
                return
        try:
            arr = self._fetch(iy, ix, covered)
        except ChunkDecodeError:
            if strict:
                raise
            log.warning("%s: chunk (%d, %d) is unreadable; shown as background", self.key, iy, ix)
            arr = None
        if arr is None:
            target[...] = FILL_VALUE
            return
        if self.cache is not None:
            self.cache.consume((self.key, iy, ix), (sy1 - sy0) * (sx1 - sx0))
        ah = max(sy0 - cy, min(sy1 - cy, arr.shape[0]))
        aw = max(sx0 - cx, min(sx1 - cx, arr.shape[1]))
        target[: ah - (sy0 - cy), : aw - (sx0 - cx)] = arr[sy0 - cy : ah, sx0 - cx : aw, :3]
        if ah < sy1 - cy:  # a chunk smaller than the grid says: the rest is background
            target[ah - (sy0 - cy) :] = FILL_VALUE
        if aw < sx1 - cx:
            target[:, aw - (sx0 - cx) :] = FILL_VALUE


def _fill_outside(out: np.ndarray, origin: tuple[int, int],
                  bounds: tuple[int, int, int, int]) -> None:
    """Paint the part of ``out`` outside the image (``bounds`` in level pixels) white."""
    y0, x0, y1, x1 = (bounds[0] - origin[0], bounds[1] - origin[1],
                      bounds[2] - origin[0], bounds[3] - origin[1])
    out[:y0] = FILL_VALUE
    out[y1:] = FILL_VALUE
    out[y0:y1, :x0] = FILL_VALUE
    out[y0:y1, x1:] = FILL_VALUE


class LevelArray:
    """Array-like view of a level for ``dask.array.from_array`` (slices -> region reads).

    Chunks that fail to decode are shown as background (and logged) so that a viewer never
    crashes on one bad tile; scoring reads through ``ChunkedLevel.read_region(strict=True)``
    and counts such tiles instead.
    """

    def __init__(self, level: ChunkedLevel) -> None:
        self.level = level
        self.shape = (*level.shape, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, tuple):
            index = (index,)
        index = index + (slice(None),) * (3 - len(index))
        ys, xs, cs = index
        y0, y1, _ = ys.indices(self.shape[0])
        x0, x1, _ = xs.indices(self.shape[1])
        region = self.level.read_region(y0, x0, max(y1 - y0, 0), max(x1 - x0, 0), strict=False)
        return region[:, :, cs]
