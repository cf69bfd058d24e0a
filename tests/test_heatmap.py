"""Heatmap rasters: tile placement, percentile scaling, NaN-aware blur, the attention layer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_her2.tiles.heatmap import attention_raster, scale_percentile, smooth, tile_raster
from napari_her2.tiles.results import TileResults


def make_results(rows, cols, grid=(4, 5)) -> TileResults:
    n = len(rows)
    return TileResults(
        classes=("0", "3+"), feature_names=(), grid_shape=grid, origin0=(0.0, 0.0),
        tile_size0=(256.0, 256.0), rows=np.asarray(rows, np.int32),
        cols=np.asarray(cols, np.int32), probs=np.full((n, 2), 0.5, np.float32),
        readable=np.ones(n, bool),
    )


def test_tile_raster_places_values():
    results = make_results([0, 1, 3], [0, 2, 4])
    raster = tile_raster(results, [1.0, 2.0, 3.0])
    assert raster.shape == (4, 5) and raster.dtype == np.float32
    assert (raster[0, 0], raster[1, 2], raster[3, 4]) == (1.0, 2.0, 3.0)
    assert np.count_nonzero(np.isfinite(raster)) == 3
    assert (tile_raster(results, [1, 2, 3], fill=0) == 0).sum() == 17
    with pytest.raises(ValueError, match="2 values for 3 tiles"):
        tile_raster(results, [1.0, 2.0])


def test_scale_percentile():
    ramp = np.arange(101, dtype=np.float32).reshape(1, -1)
    assert np.allclose(scale_percentile(ramp, 0, 100), ramp / 100)
    scaled = scale_percentile(ramp, 10, 90)
    assert scaled[0, 0] == 0 and scaled[0, -1] == 1 and np.isclose(scaled[0, 50], 0.5)
    spiky = np.array([[0.0, 1.0, 2.0, np.nan, 1e6]], np.float32)
    out = scale_percentile(spiky)
    assert np.isnan(out[0, 3]) and np.nanmin(out) == 0 and np.nanmax(out) == 1
    assert out[0, 2] < 0.01  # one extreme tile does not wash out the rest beyond 99%
    assert np.isnan(scale_percentile(np.full((2, 2), np.nan))).all()
    const = scale_percentile(np.array([[3.0, np.nan, 3.0]]))
    assert const[0, 0] == const[0, 2] == 0.5 and np.isnan(const[0, 1])
    with pytest.raises(ValueError):
        scale_percentile(ramp, 50, 50)


def test_smooth_ignores_missing_tiles():
    raster = np.full((9, 9), np.nan, np.float32)
    raster[:, :5] = 1.0  # a naive blur would pull the border towards 0
    out = smooth(raster, 1.5)
    assert np.allclose(out[:, :5], 1.0) and np.isnan(out[:, 5:]).all()
    spike = np.zeros((9, 9), np.float32)
    spike[4, 4] = 1.0
    blurred = smooth(spike, 1.0)
    assert 0 < blurred[4, 4] < 1 and blurred[4, 5] > 0 and blurred[0, 0] < blurred[4, 5]
    copy = smooth(raster, 0)
    assert copy is not raster and np.array_equal(copy, raster, equal_nan=True)
    with pytest.raises(ValueError):
        smooth(raster, -1)


def test_attention_raster():
    results = make_results([0, 0, 1, 2, 3], [0, 1, 1, 3, 4])
    raster = attention_raster(results, np.array([0.1, 5.0, np.nan, 1.0, 0.5]))
    assert raster.dtype == np.float32 and raster.shape == (4, 5)
    assert np.nanmin(raster) == 0 and np.nanmax(raster) == 1 and raster[0, 1] == 1
    assert raster[0, 0] == 0, "the lowest attention is a value, drawn as scored"
    assert np.isnan(raster[1, 1])  # never sampled / unreadable: transparent
    assert np.isnan(raster[2, 0])  # no tile (glass): transparent
    assert np.isfinite(raster).sum() == 4
    assert 0 < raster[2, 3] < 1
    blurred = attention_raster(results, np.array([0.1, 5.0, np.nan, 1.0, 0.5]), sigma_tiles=1.0)
    assert np.nanmin(blurred) >= 0 and np.nanmax(blurred) <= 1 and np.isnan(blurred[2, 0])
