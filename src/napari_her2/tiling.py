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
from .tissue import TissueMask

log = logging.getLogger(__name__)


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
            idx = [slice(None)] * arr.ndim
            idx[axis] = sel
            sums[tuple(idx)] -= np.stack(extra, axis=axis)
        idx = [slice(None)] * arr.ndim
        idx[axis] = np.flatnonzero(ok)
        out[tuple(idx)] = sums
    return out
