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

from .slide import Slide
from .slide._model import SLIDE_LIMITS, SlideLimitError
from .tissue import TissueMask

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
