"""The :class:`Slide`: lazy pyramid levels, resolution and metadata, whatever the file format.

Backends (:mod:`.tiff`, :mod:`.dicom`, :mod:`.image`) build a Slide; nothing above ``slide/``
knows which one did. Levels are dask arrays whose blocks are whole multiples of the file's own
chunks; single-level images get lower levels built lazily (2x steps) on demand.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import dask.array as da
import numpy as np

from ..errors import MissingMppError, SlideReadError
from ._chunks import ChunkDecodeError, ChunkedLevel, LevelArray

#: microns per pixel outside this range is not a microscope scan (72 dpi is 352.8 µm/px)
PLAUSIBLE_MPP = (0.02, 50.0)
#: single-level images larger than this (px, either side) get lazily built lower levels
MIN_PYRAMID_SIDE = 2048


@dataclass(frozen=True)
class SlideLimits:
    """Bounds that keep memory and time proportional to what a slide really holds; a file
    past one is refused with :class:`SlideLimitError` instead of being decoded.

    The largest real scans are about 200,000 x 100,000 px (2e10 px) with 240-1024 px tiles
    (NDPI: level-wide strips of 8-16 rows), so the defaults leave a wide margin.
    """

    #: level-0 pixels of a slide (2**36 = 262,144 px square)
    max_level_pixels: int = 2**36
    #: pixels of one decoded chunk (tile, strip, frame): 2**26 = 8192 x 8192 (192 MB RGB)
    max_chunk_pixels: int = 2**26
    #: stored (compressed) bytes of one chunk
    max_chunk_bytes: int = 2**28
    #: single-level images with more pixels get no lazily built lower levels (2**32 = 65,536
    #: px square: building one would decode the whole image)
    max_lazy_base_pixels: int = 2**32
    #: pixels of the level tissue detection reads whole (2**26 = 8192 x 8192)
    max_mask_pixels: int = 2**26
    #: cells of a tile grid (its per-cell arrays stay well under 1 GB)
    max_grid_cells: int = 2**24
    #: pixels of a PNG or JPEG, which is decoded whole when opened (2**30: 3 GB of RGB)
    max_plain_image_pixels: int = 2**30
    #: pixels of an associated image (label, macro, thumbnail: a few Mpx in real files),
    #: which viewers read whole; a larger one is skipped with a warning
    max_associated_pixels: int = 2**24


#: the limits in force (see docs/robustness.md)
SLIDE_LIMITS = SlideLimits()


class SlideLimitError(SlideReadError):
    """A slide (or a tile grid over it) is larger than a :class:`SlideLimits` bound."""


def check_level_size(path: Path, shape: tuple[int, int], what: str = "the image",
                     limit: int | None = None) -> None:
    """SlideLimitError when ``shape`` (h, w) has more pixels than ``limit`` (default: what a
    slide can have)."""
    h, w = int(shape[0]), int(shape[1])
    limit = SLIDE_LIMITS.max_level_pixels if limit is None else limit
    if h * w > limit:
        raise SlideLimitError(
            path, f"{what} claims {w} x {h} px ({h * w:.3g} px), more than the "
            f"{limit:.3g} px allowed: the file is damaged or not a slide")


def check_chunk_size(path: Path, chunk: tuple[int, int], what: str = "the image") -> None:
    """SlideLimitError when one chunk would decode to more pixels than the limit."""
    h, w = int(chunk[0]), int(chunk[1])
    if h * w > SLIDE_LIMITS.max_chunk_pixels:
        raise SlideLimitError(
            path, f"{what} is stored in chunks of {w} x {h} px, more than the "
            f"{SLIDE_LIMITS.max_chunk_pixels:.3g} px one chunk may decode to; re-save it as a "
            "tiled pyramidal TIFF")


class MissingMppWarning(UserWarning):
    """The slide's metadata gives no usable microns per pixel."""


class Mpp(NamedTuple):
    """Microns per pixel of level 0."""

    x: float
    y: float


class SlideResources:
    """What an open slide holds (file handles, caches), shared by a slide and its copies.

    The slide a backend builds holds the first reference; each copy made by
    :meth:`Slide.with_mpp` takes another. The last ``release`` closes them, so closing a copy
    never closes the original (nor the other way round).
    """

    def __init__(self, closer: Callable[[], None] | None = None) -> None:
        self._closer = closer
        self._count = 1
        self._lock = threading.Lock()

    def acquire(self) -> SlideResources:
        with self._lock:
            self._count += 1
        return self

    def release(self) -> None:
        with self._lock:
            self._count -= 1
            last = self._count == 0
        if last and self._closer is not None:
            self._closer()


@dataclass(eq=False)
class Slide:
    """A whole-slide image: lazy pyramid levels plus resolution and metadata.

    levels: (H, W, 3) uint8 dask arrays, level 0 first.
    downsamples: per level (y, x) level-0 pixels per level pixel (not always powers of two).
    mpp: level-0 microns per pixel, or None when the file gives none (see ``mpp_source``).
    """

    path: Path
    levels: list[da.Array]
    downsamples: list[tuple[float, float]]
    mpp: Mpp | None
    mpp_source: str
    magnification: float | None
    vendor: str
    tile_size: tuple[int, int]
    compression: str
    associated: dict[str, da.Array] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    readers: list[ChunkedLevel] = field(default_factory=list, repr=False)
    _resources: SlideResources | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.levels:
            check_level_size(self.path, self.levels[0].shape[:2])

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (height, width) in pixels."""
        return (int(self.levels[0].shape[0]), int(self.levels[0].shape[1]))

    @property
    def level_count(self) -> int:
        return len(self.levels)

    def level_mpp(self, level: int) -> Mpp | None:
        """Microns per pixel of a level (None without a level-0 mpp)."""
        if self.mpp is None:
            return None
        dy, dx = self.downsamples[level]
        return Mpp(self.mpp.x * dx, self.mpp.y * dy)

    def require_mpp(self) -> Mpp:
        """The level-0 mpp, or :class:`MissingMppError` naming the file."""
        if self.mpp is None:
            raise MissingMppError(self.path)
        return self.mpp

    def best_level_for_downsample(self, downsample: float) -> int:
        """The lowest-resolution level whose downsample does not exceed ``downsample``."""
        best = 0
        for i, (dy, dx) in enumerate(self.downsamples):
            if max(dy, dx) <= downsample * (1 + 1e-3):
                best = i
        return best

    def read_region(
        self, level: int, y: int, x: int, h: int, w: int, *, strict: bool = True,
        workers: int = 1,
    ) -> np.ndarray:
        """Pixels of ``level`` in [y, y+h) x [x, x+w) (level coordinates), (h, w, 3) uint8.

        With strict=True a corrupt chunk raises :class:`SlideReadError`; outside the image is
        white. ``workers`` threads decode a large region's chunks in parallel (a whole level,
        a thumbnail); leave it at 1 where the caller already reads in parallel. Levels built
        lazily from a single-level file are computed through dask.
        """
        if level < len(self.readers):
            try:
                return self.readers[level].read_region(y, x, h, w, strict=strict,
                                                       workers=workers)
            except ChunkDecodeError as err:
                raise SlideReadError(self.path, str(err)) from err
        arr = self.levels[level]
        out = np.full((h, w, 3), 255, np.uint8)
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + h, arr.shape[0]), min(x + w, arr.shape[1])
        if y1 > y0 and x1 > x0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = arr[y0:y1, x0:x1].compute(
                scheduler="threads" if workers > 1 else "sync", num_workers=workers)
        return out

    def with_mpp(self, mpp: float | tuple[float, float]) -> Slide:
        """A copy of this slide with the level-0 microns per pixel set by the user.

        The copy shares the open file; closing either one leaves the other readable."""
        pair = (mpp, mpp) if isinstance(mpp, (int, float, np.number)) else tuple(mpp)
        mx, my = float(pair[0]), float(pair[1])
        check_user_mpp(self.path, mx, my)
        resources = self._resources.acquire() if self._resources is not None else None
        return replace(self, mpp=Mpp(mx, my), mpp_source="user",
                       _resources=resources, _closed=False)

    def close(self) -> None:
        """Release the file (closed once no copy of this slide uses it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._resources is not None:
            self._resources.release()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def summary(self) -> dict:
        """JSON-able description: levels, sizes, downsamples, mpp, vendor, tiles."""
        return {
            "file": str(self.path),
            "vendor": self.vendor,
            "mpp": None if self.mpp is None else {"x": self.mpp.x, "y": self.mpp.y},
            "mpp_source": self.mpp_source,
            "magnification": self.magnification,
            "tile_size": list(self.tile_size),
            "compression": self.compression,
            "levels": [
                {"shape": [int(a.shape[0]), int(a.shape[1])], "downsample": [dy, dx]}
                for a, (dy, dx) in zip(self.levels, self.downsamples)
            ],
            "associated": {k: [int(a.shape[0]), int(a.shape[1])] for k, a in self.associated.items()},
        }


def to_dask(level: ChunkedLevel, path: Path) -> da.Array:
    """A level reader as a dask array (blocks are whole multiples of the file's chunks)."""
    return da.from_array(
        LevelArray(level),
        chunks=dask_chunks(level.shape, level.chunk),
        asarray=False,
        lock=False,
        fancy=False,
        meta=np.empty((0, 0, 3), np.uint8),
        name=f"napari-her2-{path.name}-{level.key}-{id(level):x}",
    )


#: dask block sides (px) for levels of up to ``MAX_SMALL_BLOCKS`` blocks, and for larger ones
SMALL_BLOCK, LARGE_BLOCK, MAX_SMALL_BLOCKS = 512, 1024, 4096


def dask_chunks(shape: tuple[int, int], chunk: tuple[int, int], target: int | None = None) -> tuple:
    """Dask block shape: whole multiples of the file's chunk, about ``target``² pixels.

    napari widens what it fetches to whole blocks: 512 px blocks fetch less than 1024 px ones
    (about 0.7x on a 16k slide: cold and warm views both faster), but dask's slicing costs
    grow with the blocks a level has, so a level that would have more than
    ``MAX_SMALL_BLOCKS`` of them (over ~32k px square) gets 1024 px blocks. Wide chunks (NDPI
    restart-interval strips, TIFF strips) get fewer rows, so a block stays a few MB.
    """
    if target is None:
        small = math.ceil(shape[0] / SMALL_BLOCK) * math.ceil(shape[1] / SMALL_BLOCK)
        target = SMALL_BLOCK if small <= MAX_SMALL_BLOCKS else LARGE_BLOCK
    ch, cw = chunk
    bx = cw * max(1, round(target / cw)) if cw < target else cw
    bx = min(bx, cw * math.ceil(shape[1] / cw))  # a narrow image gets taller blocks instead
    rows = max(1, round(target * target / (ch * bx)))
    by = ch * rows
    return (min(by, shape[0]), min(bx, shape[1]), 3)


def lazy_shapes(shape: tuple[int, int]) -> list[tuple[int, int]]:
    """Shapes of the lower levels a single-level image gets, each half the previous (none
    above ``SLIDE_LIMITS.max_lazy_base_pixels``: building one decodes the whole image)."""
    h0, w0 = int(shape[0]), int(shape[1])
    if h0 * w0 > SLIDE_LIMITS.max_lazy_base_pixels or max(h0, w0) <= MIN_PYRAMID_SIDE:
        return []
    shapes = [(h0, w0)]
    while max(shapes[-1]) > MIN_PYRAMID_SIDE // 2 and min(shapes[-1]) >= 4:
        shapes.append((shapes[-1][0] // 2, shapes[-1][1] // 2))  # a thin strip stops early
    return shapes[1:]


def add_lazy_levels(slide: Slide) -> None:
    """Give a single-level slide its lower levels, built on demand.

    Each lower level is a :class:`ChunkedLevel` whose chunks (512 px, or whole-width bands
    over a file of whole-width strips: :func:`halved_level`) are 2x reductions of the level
    above, read through the slide's chunk cache: a tile of a low level costs about the
    region it covers, each chunk decoded once, in bounded memory. Without a chunk reader (a slide made
    of dask arrays) the levels are built with dask instead.
    """
    shapes = lazy_shapes(slide.levels[0].shape[:2])
    if not shapes:
        return
    h0, w0 = slide.dimensions
    if not slide.readers:
        slide.levels, slide.downsamples = lazy_pyramid(slide.levels[0])
        return
    readers = [slide.readers[0]]
    for i, _ in enumerate(shapes, start=1):
        readers.append(halved_level(readers[-1], f"{readers[0].key}/{2**i}"))
    slide.readers = readers
    slide.levels = [slide.levels[0], *(to_dask(r, slide.path) for r in readers[1:])]
    slide.downsamples = [(h0 / r.shape[0], w0 / r.shape[1]) for r in readers]


def halved_level(parent: ChunkedLevel, key: str, block: int = 512) -> ChunkedLevel:
    """A level half the size of ``parent``: chunk (iy, ix) is the 2x reduction of the
    parent's region under it (a corrupt parent chunk makes it a corrupt chunk).

    Chunks are ``block`` px squares, or whole-width bands over a file of whole-width strips,
    so that each strip is decoded once however wide the image (no strip is cached across a
    row of square chunks)."""
    h, w = parent.shape[0] // 2, parent.shape[1] // 2
    ch, cw = block, block
    if parent.chunk[1] >= parent.shape[1]:
        ch, cw = max(16, min(block, 2**22 // max(w, 1))), max(w, 1)

    def decode(iy: int, ix: int) -> np.ndarray:
        y, x = iy * ch, ix * cw
        bh, bw = min(ch, h - y), min(cw, w - x)
        return halve(parent.read_region(2 * y, 2 * x, 2 * bh, 2 * bw, strict=True))

    return ChunkedLevel(key=key, shape=(h, w), chunk=(ch, cw), decode=decode,
                        cache=parent.cache)


def lazy_pyramid(base: da.Array) -> tuple[list[da.Array], list[tuple[float, float]]]:
    """Lower levels of a single-level dask image (see :func:`lazy_shapes`), each half the
    previous, computed by dask on demand."""
    levels, downs = [base], [(1.0, 1.0)]
    h0, w0 = base.shape[:2]
    for _ in lazy_shapes((h0, w0)):
        prev = levels[-1]
        even = prev[: prev.shape[0] // 2 * 2, : prev.shape[1] // 2 * 2]
        even = even.rechunk(tuple(max(2, c // 2 * 2) for c in _block(even)) + (3,))
        half = da.map_blocks(halve, even, dtype=np.uint8, chunks=tuple(
            tuple(c // 2 for c in cs) for cs in even.chunks[:2]) + ((3,),))
        levels.append(half)
        downs.append((h0 / half.shape[0], w0 / half.shape[1]))
    return levels, downs


def _block(arr: da.Array) -> tuple[int, int]:
    return (min(2048, arr.shape[0]), min(2048, arr.shape[1]))


def halve(block: np.ndarray) -> np.ndarray:
    b = block.astype(np.uint16)
    out = (b[0::2, 0::2] + b[1::2, 0::2] + b[0::2, 1::2] + b[1::2, 1::2] + 2) // 4
    return out.astype(np.uint8)



def plausible_mpp(mpp: float) -> bool:
    """True for a resolution a microscope scan can have."""
    return PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]


def check_user_mpp(path: Path, mx: float, my: float) -> None:
    for v in (mx, my):
        if not (math.isfinite(v) and v > 0):
            raise SlideReadError(path, f"microns per pixel must be a positive number, got {v}")
        if not plausible_mpp(v):
            raise SlideReadError(
                path, f"{v} µm/px is outside {PLAUSIBLE_MPP[0]}-{PLAUSIBLE_MPP[1]} µm/px, "
                "not a microscope scan resolution"
            )

