"""The tile layer's raster: k x k pixels per tile, cropped so that it ends at the slide edge."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from napari_her2._qt.layers import META_KEY, SUBPIXELS_KEY, layer_raster, tile_layer_kwargs
from napari_her2.export import layer_geojson
from napari_her2.tiles.grid import EDGE_TOLERANCE, MAX_RASTER_CELLS, TileGeometry, TileRaster


def grid_of(image_shape0: tuple[int, int], tile: float) -> tuple[int, int]:
    """The grid make_grid builds: ceil(image / tile) tiles per axis from the top-left."""
    return math.ceil(image_shape0[0] / tile), math.ceil(image_shape0[1] / tile)


def raster_end0(raster: TileRaster, tile: float, axis: int) -> float:
    """Level-0 coordinate where the raster ends along ``axis``."""
    return raster.shape[axis] * tile / raster.k


def test_one_pixel_per_tile_when_the_slide_is_whole_tiles():
    raster = TileRaster.fit((4, 6), (256.0, 256.0), (1024, 1536))
    assert (raster.k, raster.shape) == (1, (4, 6))
    assert TileRaster.fit((5, 5), (256.0, 256.0)).k == 1  # image size unknown: as before


def test_a_three_quarter_tile_needs_four_pixels_per_tile():
    # 1216 px at 256 px per tile: the last tile is 192 px = 3/4 inside the slide
    raster = TileRaster.fit((5, 5), (256.0, 256.0), (1216, 1216))
    assert (raster.k, raster.shape) == (4, (19, 19))
    assert raster_end0(raster, 256.0, 0) == 1216.0


@settings(max_examples=200, deadline=None)
@given(h=st.integers(16, 5000), w=st.integers(16, 5000),
       tile=st.sampled_from([16.0, 100.0, 128.0, 256.0, 512.0, 448.5]))
@example(h=3841, w=4337, tile=16.0)  # capped: 241 x 272 tiles allow k = 7 only
def test_the_raster_ends_at_the_slide_edge(h, w, tile):
    grid = grid_of((h, w), tile)
    raster = TileRaster.fit(grid, (tile, tile), (h, w))
    assert 1 <= raster.k <= 16
    # the cell cap may forbid a finer k (many small tiles); the edge then overshoots by less
    # than one raster pixel, 1/k tile, as the log line says
    capped = grid[0] * grid[1] * (raster.k + 1) ** 2 > MAX_RASTER_CELLS
    for axis, edge in enumerate((h, w)):
        past = raster_end0(raster, tile, axis) - edge
        assert -1e-6 <= past < tile / raster.k  # never short of the edge, never a sub-pixel past
        if not capped:
            assert past <= EDGE_TOLERANCE * tile + 1e-6  # k = 16 at most always reaches 1/16
    assert raster.shape[0] * raster.shape[1] <= MAX_RASTER_CELLS


def test_a_huge_grid_falls_back_to_fewer_pixels_per_tile(caplog):
    grid = (3000, 3001)  # 9 M tiles: 4 M cells allow one pixel per tile only
    with caplog.at_level(logging.INFO, logger="napari_her2.tiles.grid"):
        raster = TileRaster.fit(grid, (256.0, 256.0), (3000 * 256 - 5, 3001 * 256 - 5))
    assert raster.k == 1 and raster.shape == grid
    assert "pixels per tile" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="napari_her2.tiles.grid"):
        # 13 px of the last tile inside: 1/16 needs k = 9, 1 M tiles allow 2
        raster = TileRaster.fit((1000, 1000), (256.0, 256.0), (999 * 256 + 13, 999 * 256 + 13))
    assert raster.k == 2 and raster.shape == (1999, 1999) and "allow 2 (not 9)" in caplog.text


def test_paint_fills_blocks_and_per_tile_reads_them_back():
    raster = TileRaster(grid_shape=(3, 3), k=4, shape=(10, 9))  # last row 2 px, last col 1 px
    data = raster.blank()
    raster.paint(data, [0, 2, 2, 1], [0, 2, 0, 2], [1, 4, 3, 2])
    assert (data[0:4, 0:4] == 1).all() and (data[8:10, 8:9] == 4).all()
    assert (data[8:10, 0:4] == 3).all() and (data[4:8, 8:9] == 2).all()
    assert np.count_nonzero(data) == 16 + 2 + 8 + 4  # cropped blocks, nothing else
    expected = np.array([[1, 0, 0], [0, 0, 2], [3, 0, 4]], np.uint8)
    np.testing.assert_array_equal(raster.per_tile(data), expected)
    assert raster.per_tile(data).dtype == np.uint8


def test_per_tile_takes_the_most_common_value_of_a_hand_edited_block():
    raster = TileRaster(grid_shape=(2, 2), k=4, shape=(7, 7))  # last blocks 3 px wide
    data = raster.blank()
    raster.paint(data, [0, 0, 1, 1], [0, 1, 0, 1], 2)
    data[0:3, 0:4] = 4  # a brush stroke over 12 of 16 pixels: the tile is now 3+
    data[0, 4:7] = 5  # 3 of the 12 pixels of a cropped block: stays 1+
    data[4:7, 4] = 3  # 3 of 9 pixels of the corner block: stays 1+
    data[4:6, 0:4] = 0  # erased 8 of 12: "not scored" wins only when it is the most common
    np.testing.assert_array_equal(raster.per_tile(data), [[4, 2], [0, 2]])
    data[4, 0:4] = 2  # now 4 of 12 erased, 8 of 12 class 1+ again
    assert raster.per_tile(data)[1, 0] == 2
    tie = raster.blank()
    tie[0:2, 0:4], tie[2:4, 0:4] = 4, 0
    assert raster.per_tile(tie)[0, 0] == 4 and raster.value(tie, 0, 0) == 4  # ties: a class
    tie[2:4, 0:4] = 3
    assert raster.per_tile(tie)[0, 0] == 3 and raster.value(tie, 0, 0) == 3  # smaller class


def test_one_pixel_per_tile_is_the_grid_itself():
    raster = TileRaster.fit((2, 3), (64.0, 64.0), (128, 192))
    data = raster.blank()
    raster.paint(data, [1], [2], 4)
    assert data[1, 2] == 4 and raster.per_tile(data) is data
    with pytest.raises(ValueError, match="not the tile raster"):
        raster.per_tile(np.zeros((4, 6), np.uint8))


def test_block_value_tile_at_and_centre():
    raster = TileRaster(grid_shape=(3, 3), k=4, shape=(10, 9))
    ys, xs = raster.block(2, 2)
    assert sorted(zip(ys.tolist(), xs.tolist(), strict=True)) == [(8, 8), (9, 8)]
    assert raster.tile_at(9.4, 8.2) == (2, 2) and raster.tile_at(3.6, 0) == (1, 0)
    assert raster.tile_at(10, 0) is None and raster.tile_at(-0.6, 0) is None
    assert raster.centre(1, 2) == (5.5, 9.5)
    assert TileRaster.of((10, 9), 4) == raster
    with pytest.raises(ValueError, match="no 4-per-tile raster"):
        TileRaster(grid_shape=(3, 3), k=4, shape=(8, 9))


@pytest.mark.parametrize("image_scale,image_translate",
                         [((1.0, 1.0), (0.0, 0.0)), ((0.5, 0.25), (12.0, -3.5))])
def test_placement_puts_raster_pixels_on_their_level0_span(image_scale, image_translate):
    tile = (256.0, 128.0)
    grid = TileGeometry((5, 7), tile)
    one = TileRaster.fit((5, 7), tile)
    assert one.placement(tile, image_scale, image_translate) == grid.layer_placement(
        image_scale, image_translate)  # k = 1: exactly as before
    raster = TileRaster.fit((5, 7), tile, (1216, 850))
    assert raster.k > 1
    scale, translate = (np.array(v) for v in raster.placement(tile, image_scale,
                                                              image_translate))
    s, t = np.array(image_scale), np.array(image_translate)

    def level0_edge(data_edge):  # world of a data-pixel edge -> level-0 pixel edge
        return (data_edge * scale + translate - t) / s + 0.5

    np.testing.assert_allclose(level0_edge(np.array([-0.5, -0.5])), [0, 0], atol=1e-9)
    j = np.array(raster.shape) - 0.5  # far edge of the last raster pixel
    np.testing.assert_allclose(level0_edge(j), np.array(raster.shape) * tile / raster.k)
    tile_scale, tile_translate = raster.tile_transform(scale, translate)
    np.testing.assert_allclose(tile_scale, grid.layer_placement(image_scale, image_translate)[0])
    np.testing.assert_allclose(tile_translate,
                               grid.layer_placement(image_scale, image_translate)[1])


class _Layer:
    def __init__(self, data, metadata):
        self.data, self.metadata = data, metadata


def test_the_geojson_of_a_sub_tile_raster_has_one_feature_per_tile():
    image_scale = (0.5, 0.5)
    grid, tile = (5, 5), (256.0, 256.0)
    labels = np.zeros(grid, np.uint8)
    labels[0, 0], labels[4, 4], labels[2, 4] = 1, 4, 3
    raster_data, kwargs = tile_layer_kwargs("s", grid, tile, image_scale,
                                            image_shape0=(1216, 1200),
                                            extra_meta={"slide": "/x/s.tif"})
    meta = kwargs["metadata"]
    assert meta[META_KEY][SUBPIXELS_KEY] > 1 and raster_data.shape != grid
    raster = layer_raster(_Layer(raster_data, meta))
    rows, cols = np.nonzero(labels)
    raster.paint(raster_data, rows, cols, labels[rows, cols])
    raster_data[raster.block(2, 4)[0][:3], raster.block(2, 4)[1][:3]] = 2  # a small brush dab
    fc = layer_geojson(raster_data, meta, scale=kwargs["scale"], translate=kwargs["translate"])
    boxes = {f["properties"]["classification"]["name"].removeprefix("HER2 "):
             f["geometry"]["coordinates"][0] for f in fc["features"]}
    assert len(fc["features"]) == 3
    assert boxes["3+"][0] == [1024.0, 1024.0] and boxes["3+"][2] == [1200.0, 1216.0]  # clipped
    assert boxes["2+"][0] == [1024.0, 512.0]  # the dab did not change the tile's class
    assert fc == layer_geojson(raster_data, meta)  # the layer's own transform by default
