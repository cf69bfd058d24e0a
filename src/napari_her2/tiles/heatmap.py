"""Per-tile values (attention, probabilities) as a raster napari draws over the slide.

A heatmap has one value per tile, like the tile label layer
(:meth:`napari_her2.tiles.results.TileResults.label_image`); the widget draws it through the same
:class:`napari_her2.tiles.grid.TileRaster` (k x k pixels per tile, cropped at the slide edge) with
the same scale and translate. Steps:

1. :func:`tile_raster`: values into the (rows, cols) tile grid, NaN where no tile is;
2. :func:`smooth` (optional): a NaN-aware Gaussian blur in tile units (normalised
   convolution: tiles without a value neither contribute nor receive one);
3. :func:`scale_percentile`: values scaled between their low / high percentiles and clipped
   to [0, 1], as CLAM does, so that a few extreme tiles do not wash out the rest.

:func:`attention_raster` chains them for the attention layer. Tiles of one grid do not
overlap yet, so every grid pixel has at most one value and no overlap averaging is needed;
it becomes necessary (average the values of all tiles covering a pixel) once tiling with
overlap is added.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from .results import TileResults

#: blurred weight below which a pixel counts as having no neighbours (normalised convolution)
_MIN_WEIGHT = 1e-6


def tile_raster(results: TileResults, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """(rows, cols) float32 raster of one value per tile, ``fill`` where no tile was scored."""
    values = np.asarray(values, np.float32).ravel()
    if values.shape[0] != len(results):
        raise ValueError(f"got {values.shape[0]} values for {len(results)} tiles")
    raster = np.full(results.grid_shape, fill, np.float32)
    raster[results.rows, results.cols] = values
    return raster


def scale_percentile(raster: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Values scaled to [0, 1] between their ``low`` and ``high`` percentiles (finite pixels
    only), clipped; NaN stays NaN; a constant raster becomes 0.5 where finite."""
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"need 0 <= low < high <= 100, got low={low}, high={high}")
    out = np.array(raster, np.float32, copy=True)
    finite = np.isfinite(out)
    if not finite.any():
        return out
    lo, hi = np.percentile(out[finite].astype(np.float64), [low, high])
    if not hi > lo:
        out[finite] = 0.5
        return out
    out[finite] = np.clip((out[finite] - lo) / (hi - lo), 0.0, 1.0)
    return out


def smooth(raster: np.ndarray, sigma_tiles: float) -> np.ndarray:
    """NaN-aware Gaussian blur with ``sigma_tiles`` in tile (pixel) units.

    Normalised convolution: blur(values * w) / blur(w) with w = 1 on finite pixels, so a
    pixel is the weighted mean of its finite neighbours; NaN pixels stay NaN. A sigma of 0
    returns a copy.
    """
    if sigma_tiles < 0:
        raise ValueError(f"sigma_tiles must be >= 0, got {sigma_tiles}")
    out = np.array(raster, np.float32, copy=True)
    if sigma_tiles == 0 or out.size == 0:
        return out
    finite = np.isfinite(out)
    weight = finite.astype(np.float64)
    num = gaussian_filter(np.where(finite, out, 0.0).astype(np.float64), sigma_tiles,
                          mode="constant", cval=0.0)
    den = gaussian_filter(weight, sigma_tiles, mode="constant", cval=0.0)
    ok = finite & (den > _MIN_WEIGHT)
    out[ok] = (num[ok] / den[ok]).astype(np.float32)
    return out


def attention_raster(results: TileResults, attention: np.ndarray, *,
                     sigma_tiles: float = 0.0) -> np.ndarray:
    """(rows, cols) float32 attention heatmap in [0, 1]: per-tile values placed on the grid,
    blurred by ``sigma_tiles`` and percentile-scaled; NaN where there is no value (glass, no
    tile, an unreadable tile, or one never sampled). napari and matplotlib draw NaN
    transparent, so the map never covers the glass with the colormap's darkest colour, and
    a tile with the lowest attention (0) still shows as scored."""
    raster = smooth(tile_raster(results, attention), sigma_tiles)
    return scale_percentile(raster).astype(np.float32)
