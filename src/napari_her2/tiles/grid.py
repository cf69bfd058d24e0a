"""The tile grid: square tiles at a target resolution, over tissue only.

A tile is ``tile_size`` pixels at ``target_mpp`` µm/px. It is read from the pyramid level
closest to (and not coarser than) the target and resized the rest of the way. The grid
starts at the slide's top-left corner; the last row and column may reach past the image
edge: those partial tiles are padded with white (background), flagged in ``partial``, and
their tissue fraction counts the padding as background, so a partial tile is scored only
when enough tissue lies inside the image.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ..ihc.tissue import TissueMask
from ..slide import Slide
from ..slide._model import SLIDE_LIMITS, SlideLimitError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileGeometry:
    """Where grid cells lie: grid cell <-> level-0 pixels <-> napari world, written once.

    shape: (rows, cols) of the grid; tile_size0: (h, w) level-0 pixels per tile (float: level
    downsamples need not be integers); origin0: (y, x) level-0 pixel of the grid's top-left
    corner; image_shape0: (h, w) of level 0 when known (edge tiles are clipped to it).

    napari puts pixel centres at integer coordinates, so a one-pixel-per-tile layer over an
    image layer of scale ``s`` and translate ``t`` has scale ``T * s`` and translate
    ``t + (origin0 + (T - 1) / 2) * s``: tile pixel j then spans level-0 [j T, (j + 1) T).
    """

    shape: tuple[int, int]
    tile_size0: tuple[float, float]
    origin0: tuple[float, float] = (0.0, 0.0)
    image_shape0: tuple[int, int] | None = None

    def boxes0(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(N, 4) float64 level-0 boxes (x0, y0, x1, y1) of cells, clipped to the image."""
        th, tw = self.tile_size0
        oy, ox = self.origin0
        x0 = ox + np.asarray(cols) * tw
        y0 = oy + np.asarray(rows) * th
        boxes = np.stack([x0, y0, x0 + tw, y0 + th], axis=1).astype(np.float64)
        if self.image_shape0 is not None:
            h, w = self.image_shape0
            boxes[:, 2] = np.minimum(boxes[:, 2], w)
            boxes[:, 3] = np.minimum(boxes[:, 3], h)
        return boxes

    def centres0(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(N, 2) level-0 (y, x) centres of cells (of the whole tile, padding included)."""
        th, tw = self.tile_size0
        return np.stack([self.origin0[0] + (np.asarray(rows) + 0.5) * th,
                         self.origin0[1] + (np.asarray(cols) + 0.5) * tw], axis=1)

    def layer_placement(self, image_scale: tuple[float, float] = (1.0, 1.0),
                        image_translate: tuple[float, float] = (0.0, 0.0),
                        ) -> tuple[tuple[float, float], tuple[float, float]]:
        """(scale, translate) of a one-pixel-per-cell napari layer over an image layer."""
        return self.map_placement(self.shape, image_scale, image_translate)

    def map_placement(self, map_shape: tuple[int, int],
                      image_scale: tuple[float, float] = (1.0, 1.0),
                      image_translate: tuple[float, float] = (0.0, 0.0),
                      cell: tuple[int, int] | None = None,
                      ) -> tuple[tuple[float, float], tuple[float, float]]:
        """(scale, translate) of an (h, w) raster drawn over the whole grid, or over one
        ``cell`` (row, col) when given (a Grad-CAM map of one tile)."""
        span = self.shape if cell is None else (1, 1)
        first = (0, 0) if cell is None else cell
        scale, translate = [], []
        for i in range(2):
            px0 = self.tile_size0[i] * span[i] / map_shape[i]  # level-0 px per raster px
            origin = self.origin0[i] + first[i] * self.tile_size0[i]
            scale.append(px0 * image_scale[i])
            translate.append(image_translate[i] + (origin + (px0 - 1) / 2) * image_scale[i])
        return (scale[0], scale[1]), (translate[0], translate[1])

    @classmethod
    def from_layer(cls, shape: tuple[int, int], scale, translate,
                   image_scale=(1.0, 1.0), image_translate=(0.0, 0.0),
                   image_shape0: tuple[int, int] | None = None) -> TileGeometry:
        """The geometry of a one-pixel-per-tile layer from its napari transform (inverse of
        :meth:`layer_placement`)."""
        size0 = tuple(float(scale[-2:][i]) / float(image_scale[i]) for i in range(2))
        origin0 = tuple((float(translate[-2:][i]) - float(image_translate[i]))
                        / float(image_scale[i]) - (size0[i] - 1) / 2 for i in range(2))
        return cls(shape, size0, origin0, image_shape0)  # type: ignore[arg-type]


#: most cells a tile layer raster may hold (uint8: 4 MiB; reading it back per tile after a
#: hand edit stays well under the 100 ms a UI step may take)
MAX_RASTER_CELLS = 2**22
#: most raster pixels per tile and axis
MAX_SUBPIXELS = 16
#: how far (in tiles) a cropped raster may end past the slide edge when k allows it
EDGE_TOLERANCE = 1 / 16


@dataclass(frozen=True)
class TileRaster:
    """The tile layer's label raster: ``k`` x ``k`` pixels per tile, cropped at the slide edge.

    grid_shape: (rows, cols) of the grid; k: raster pixels per tile and axis; shape: (h, w) of
    the raster, ``(rows - 1) * k + m`` with 1 <= m <= k pixels for the last (partial) row or
    column. With k = 1 the raster is the grid (one pixel per tile). Hand edits may leave a
    block mixed: a tile's class is then the most common value of its block (ties: the
    smallest class value, "not scored" (0) only when it alone is the most common).
    """

    grid_shape: tuple[int, int]
    k: int
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        for g, n in zip(self.grid_shape, self.shape, strict=True):
            if self.k < 1 or not (g - 1) * self.k < n <= g * self.k:
                raise ValueError(f"a raster of {self.shape} is no {self.k}-per-tile raster of "
                                 f"a {self.grid_shape} grid")

    @classmethod
    def fit(cls, grid_shape: tuple[int, int], tile_size0: tuple[float, float],
            image_shape0: tuple[int, int] | None = None) -> TileRaster:
        """The raster of a grid starting at level-0 (0, 0) that ends at the image edge (to
        within ``tile / k`` level-0 px, never short of it): k = 1 when the image is a whole
        number of tiles (or unknown), else the smallest k in 2..16 that ends within
        :data:`EDGE_TOLERANCE` tiles, bounded by :data:`MAX_RASTER_CELLS`."""
        rows, cols = (int(g) for g in grid_shape)
        if image_shape0 is None:
            return cls((rows, cols), 1, (rows, cols))
        last = [min(max(image_shape0[i] / tile_size0[i] - (g - 1), 0.0), 1.0)
                for i, g in enumerate((rows, cols))]  # covered fraction of the last tile
        if min(last) >= 1 - 1e-6:
            return cls((rows, cols), 1, (rows, cols))
        k = next((k for k in range(2, MAX_SUBPIXELS + 1)
                  if max(_last_pixels(f, k) / k - f for f in last) <= EDGE_TOLERANCE + 1e-9),
                 MAX_SUBPIXELS)
        k = min(k, max(1, int(min(tile_size0))))  # never finer than level-0 pixels
        fits = max(1, math.isqrt(MAX_RASTER_CELLS // max(rows * cols, 1)))
        if k > fits:
            log.info("tile layer: %d x %d tiles allow %d (not %d) pixels per tile and axis; "
                     "edge tiles may overshoot the slide by up to 1/%d tile", rows, cols, fits,
                     k, fits)
            k = fits
        shape = tuple((g - 1) * k + _last_pixels(f, k) for g, f in zip((rows, cols), last))
        return cls((rows, cols), k, shape)  # type: ignore[arg-type]

    @classmethod
    def of(cls, shape: tuple[int, ...], k: int = 1) -> TileRaster:
        """The view of an existing (h, w) raster with ``k`` pixels per tile."""
        h, w = (int(n) for n in shape[-2:])
        return cls((-(-h // k), -(-w // k)), int(k), (h, w))

    def blank(self) -> np.ndarray:
        """An all-zero (nothing scored) uint8 raster."""
        return np.zeros(self.shape, np.uint8)

    def paint(self, raster: np.ndarray, rows, cols, labels) -> None:
        """Write each tile's label into its (cropped) k x k block of ``raster``, in place."""
        rows, cols = np.asarray(rows, np.intp), np.asarray(cols, np.intp)
        values = np.broadcast_to(np.asarray(labels), rows.shape)
        if self.k == 1:
            raster[rows, cols] = values
            return
        ys, xs = self._spans(rows, 0), self._spans(cols, 1)  # (N, k) each
        raster[ys[:, :, None], xs[:, None, :]] = values[:, None, None]

    def _spans(self, cells: np.ndarray, axis: int) -> np.ndarray:
        """(N, k) raster indices of the cells along ``axis`` (clipped: the last is cropped)."""
        span = cells[:, None] * self.k + np.arange(self.k)[None, :]
        return np.minimum(span, self.shape[axis] - 1)

    def expand(self, values: np.ndarray) -> np.ndarray:
        """A (rows, cols) per-tile map (any dtype: attention, probabilities) as this raster:
        each value repeated over its k x k block, cropped at the slide edge."""
        values = np.asarray(values)
        if values.shape[:2] != self.grid_shape:
            raise ValueError(f"a {values.shape[:2]} map is not one value per tile of a "
                             f"{self.grid_shape} grid")
        if self.k == 1:
            return values
        big = np.repeat(np.repeat(values, self.k, axis=0), self.k, axis=1)
        return big[: self.shape[0], : self.shape[1]]

    def per_tile(self, raster: np.ndarray) -> np.ndarray:
        """(rows, cols) label of every tile (``raster`` itself when k = 1)."""
        data = np.asarray(raster)
        if data.shape != self.shape:
            raise ValueError(f"raster {data.shape} is not the tile raster {self.shape}")
        if self.k == 1:
            return data
        (rows, cols), k, (h, w) = self.grid_shape, self.k, self.shape
        out = np.array(data[::k, ::k], copy=True)  # each block's first pixel
        # edge padding repeats pixels of the same (cropped) block: it adds no new values
        blocks = np.pad(data, ((0, rows * k - h), (0, cols * k - w)), mode="edge")
        mixed = (blocks.reshape(rows, k, cols, k) != out[:, None, :, None]).any(axis=(1, 3))
        if mixed.any():  # blocks edited by hand
            r, c = np.nonzero(mixed)
            out[r, c] = self._modes(data, r, c)
        return out

    def block(self, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        """Fancy index (ys, xs) of every raster pixel of tile (row, col)."""
        ys = np.arange(row * self.k, min((row + 1) * self.k, self.shape[0]))
        xs = np.arange(col * self.k, min((col + 1) * self.k, self.shape[1]))
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        return yy.ravel(), xx.ravel()

    def value(self, raster: np.ndarray, row: int, col: int) -> int:
        """The label of one tile (the most common value of its block)."""
        return int(self._modes(np.asarray(raster), np.array([row]), np.array([col]))[0])

    def _modes(self, data: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The most common value of each (cropped) block (ties: see the class docstring)."""
        k, (h, w) = self.k, self.shape
        ys = rows[:, None] * k + np.arange(k)[None, :]  # (N, k), past the edge when cropped
        xs = cols[:, None] * k + np.arange(k)[None, :]
        inside = (ys < h)[:, :, None] & (xs < w)[:, None, :]
        values = data[np.minimum(ys, h - 1)[:, :, None], np.minimum(xs, w - 1)[:, None, :]]
        order = _vote_order(np.unique(values[inside]))
        counts = np.stack([((values == v) & inside).sum(axis=(1, 2)) for v in order])
        return order[np.argmax(counts, axis=0)]

    def centre(self, row: int, col: int) -> tuple[float, float]:
        """Raster data coordinates of the centre of tile (row, col) (of the whole tile)."""
        return row * self.k + (self.k - 1) / 2, col * self.k + (self.k - 1) / 2

    def tile_at(self, y: float, x: float) -> tuple[int, int] | None:
        """(row, col) of the tile holding raster data coordinates (y, x); None outside."""
        iy, ix = int(round(y)), int(round(x))
        if 0 <= iy < self.shape[0] and 0 <= ix < self.shape[1]:
            return iy // self.k, ix // self.k
        return None

    def placement(self, tile_size0: tuple[float, float],
                  image_scale: tuple[float, float] = (1.0, 1.0),
                  image_translate: tuple[float, float] = (0.0, 0.0),
                  ) -> tuple[tuple[float, float], tuple[float, float]]:
        """(scale, translate) of the raster over an image layer (k = 1: exactly
        :meth:`TileGeometry.layer_placement`)."""
        geometry = TileGeometry(self.grid_shape, tile_size0)
        full = (self.grid_shape[0] * self.k, self.grid_shape[1] * self.k)
        return geometry.map_placement(full, image_scale, image_translate)

    def tile_transform(self, scale, translate) -> tuple[np.ndarray, np.ndarray]:
        """The (scale, translate) a one-pixel-per-tile layer would have, from the raster's."""
        s = np.asarray(scale, float)[-2:]
        return s * self.k, np.asarray(translate, float)[-2:] + (self.k - 1) * s / 2


def _last_pixels(fraction: float, k: int) -> int:
    """Raster pixels (1..k) of a last tile of which ``fraction`` lies inside the image."""
    return min(k, max(1, math.ceil(fraction * k - 1e-9)))


def _vote_order(values: np.ndarray) -> np.ndarray:
    """Label values in the order that wins ties: classes ascending, then 0 (not scored)."""
    values = np.asarray(values)
    return np.concatenate([np.sort(values[values != 0]), values[values == 0]])


@dataclass(frozen=True)
class TileGrid:
    """Where every tile of a slide lies and which tiles are scored.

    level: pyramid level the tiles are read from; read_size: (h, w) pixels read there;
    tile_size0: (h, w) level-0 pixels covered by one tile; shape: (rows, cols);
    tissue_fraction: (rows, cols) fraction of each tile covered by tissue.
    """

    level: int
    tile_size: int
    target_mpp: float
    read_size: tuple[int, int]
    tile_size0: tuple[float, float]
    shape: tuple[int, int]
    tissue_fraction: np.ndarray
    partial: np.ndarray
    min_tissue: float
    image_shape0: tuple[int, int] | None = None

    @property
    def geometry(self) -> TileGeometry:
        """Where the grid's cells lie on the slide (and in napari)."""
        return TileGeometry(self.shape, self.tile_size0, (0.0, 0.0), self.image_shape0)

    @property
    def tissue(self) -> np.ndarray:
        """(rows, cols) True for the tiles that are scored."""
        return self.tissue_fraction >= self.min_tissue

    @property
    def n_tissue(self) -> int:
        return int(self.tissue.sum())

    def tissue_tiles(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of the scored tiles in row-major order (deterministic)."""
        rows, cols = np.nonzero(self.tissue)
        return rows.astype(np.int32), cols.astype(np.int32)

    def level_origin(self, row: int, col: int) -> tuple[int, int]:
        """Top-left (y, x) of a tile in the pixels of ``self.level``."""
        return row * self.read_size[0], col * self.read_size[1]


def check_grid_cells(slide: Slide, shape: tuple[int, int]) -> None:
    """SlideLimitError when a grid has more cells than ``SLIDE_LIMITS.max_grid_cells``."""
    cells = shape[0] * shape[1]
    if cells > SLIDE_LIMITS.max_grid_cells:
        raise SlideLimitError(
            slide.path, f"a tile grid of {shape[1]} x {shape[0]} = {cells:,} tiles exceeds the "
            f"limit of {SLIDE_LIMITS.max_grid_cells:,}: use larger tiles or a coarser target µm/px")


def make_grid(
    slide: Slide,
    tissue: TissueMask,
    *,
    tile_size: int = 256,
    target_mpp: float = 0.5,
    min_tissue: float = 0.25,
) -> TileGrid:
    """Tile grid of ``tile_size`` px at ``target_mpp`` µm/px over the slide's tissue."""
    if tile_size < 16:
        raise ValueError(f"tile size must be at least 16 px, got {tile_size}")
    if not target_mpp > 0:
        raise ValueError(f"target resolution must be > 0 µm/px, got {target_mpp}")
    mpp0 = slide.require_mpp()
    want = (target_mpp / mpp0.y, target_mpp / mpp0.x)
    if min(want) < 1:
        log.warning(
            "%s: target %.3g µm/px is finer than the scan (%.3g µm/px); tiles are upsampled",
            slide.name, target_mpp, mpp0.x,
        )
    level = slide.best_level_for_downsample(min(want))
    ly, lx = slide.downsamples[level]
    read = (max(1, round(tile_size * want[0] / ly)), max(1, round(tile_size * want[1] / lx)))
    size0 = (read[0] * ly, read[1] * lx)
    h0, w0 = slide.dimensions
    shape = (math.ceil(h0 / size0[0]), math.ceil(w0 / size0[1]))
    check_grid_cells(slide, shape)
    fraction = _tile_tissue_fraction(tissue, shape, size0)
    partial = np.zeros(shape, bool)
    if h0 % size0[0] > 1e-6 * size0[0]:
        partial[-1, :] = True
    if w0 % size0[1] > 1e-6 * size0[1]:
        partial[:, -1] = True
    return TileGrid(
        level=level,
        tile_size=tile_size,
        target_mpp=target_mpp,
        read_size=read,
        tile_size0=size0,
        shape=shape,
        tissue_fraction=fraction,
        partial=partial,
        min_tissue=min_tissue,
        image_shape0=(int(h0), int(w0)),
    )


def _tile_tissue_fraction(
    tissue: TissueMask, shape: tuple[int, int], size0: tuple[float, float]
) -> np.ndarray:
    """Fraction of each tile's area covered by the mask (band sums, no float copy)."""
    mask = tissue.mask.view(np.uint8)
    ys = np.round(np.arange(shape[0] + 1) * size0[0] / tissue.downsample[0]).astype(int)
    xs = np.round(np.arange(shape[1] + 1) * size0[1] / tissue.downsample[1]).astype(int)
    rows = _band_sums(mask, ys, axis=0)  # (grid rows, mask width)
    inside = _band_sums(rows, xs, axis=1)  # (grid rows, grid cols)
    # tile areas in mask pixels, unclipped: padding beyond the image counts as background
    area = (size0[0] / tissue.downsample[0]) * (size0[1] / tissue.downsample[1])
    return (inside / max(area, 1e-9)).astype(np.float32)


def _band_sums(arr: np.ndarray, edges: np.ndarray, axis: int) -> np.ndarray:
    """Sums of ``arr`` between consecutive ``edges`` along ``axis`` (empty bands give 0)."""
    n = arr.shape[axis]
    lo, hi = np.clip(edges[:-1], 0, n), np.clip(edges[1:], 0, n)
    out_shape = list(arr.shape)
    out_shape[axis] = len(lo)
    out = np.zeros(out_shape, np.int64)
    ok = hi > lo
    if ok.any():
        sums = np.add.reduceat(arr, lo[ok], axis=axis, dtype=np.int64)
        # reduceat sums up to the next start; cut each band at its own end instead
        ends = np.append(lo[ok][1:], n)
        extra = [np.take(arr, range(h, e), axis=axis).sum(axis=axis, dtype=np.int64)
                 for h, e in zip(hi[ok], ends) if e > h]
        if extra:
            sel = np.flatnonzero(ends > hi[ok])
            idx: list[slice | np.ndarray] = [slice(None)] * arr.ndim
            idx[axis] = sel
            sums[tuple(idx)] -= np.stack(extra, axis=axis)
        idx = [slice(None)] * arr.ndim
        idx[axis] = np.flatnonzero(ok)
        out[tuple(idx)] = sums
    return out


def scoring_notes(predictor: object, mpp_source: str) -> list[str]:
    """The notes a scorer states beside its call about how this run was set up: a µm/px given
    by hand where it measures in microns (the scorer's ``mpp_caveat``, given
    ``Slide.mpp_source``); empty for a scorer without notes."""
    mpp_caveat = getattr(predictor, "mpp_caveat", None)
    note = str(mpp_caveat(mpp_source)) if callable(mpp_caveat) else ""
    return [note] if note else []
