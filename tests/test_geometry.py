"""TileGeometry: one mapping between grid cells, level-0 pixels and napari world coordinates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from napari_her2.tiles.grid import TileGeometry

sizes = st.floats(1.0, 600.0)
scales = st.floats(0.05, 4.0)
offsets = st.floats(-500.0, 500.0)


@given(ty=sizes, tx=sizes, oy=offsets, ox=offsets, sy=scales, sx=scales, ay=offsets, ax=offsets)
def test_layer_placement_and_from_layer_are_inverse(ty, tx, oy, ox, sy, sx, ay, ax):
    geom = TileGeometry((7, 9), (ty, tx), (oy, ox))
    scale, translate = geom.layer_placement((sy, sx), (ay, ax))
    back = TileGeometry.from_layer((7, 9), scale, translate, (sy, sx), (ay, ax))
    np.testing.assert_allclose(back.tile_size0, geom.tile_size0, rtol=1e-9)
    np.testing.assert_allclose(back.origin0, geom.origin0, atol=1e-6 * (1 + abs(oy) + abs(ox)))


@given(r=st.integers(0, 50), c=st.integers(0, 50), t=sizes, s=scales)
def test_a_cell_covers_its_level0_box_in_world_coordinates(r, c, t, s):
    """napari pixel (r, c) spans world [translate + (r - 1/2) scale, ...): that span, mapped to
    level-0 pixel edges (world / image scale + 1/2), is the cell's box."""
    geom = TileGeometry((51, 51), (t, t))
    (scale, _), (translate, _) = geom.layer_placement((s, s))
    lo = (translate + (r - 0.5) * scale) / s + 0.5
    hi = (translate + (r + 0.5) * scale) / s + 0.5
    box = geom.boxes0(np.array([r]), np.array([c]))[0]
    assert lo == pytest.approx(box[1], abs=1e-6 * t * 51)
    assert hi == pytest.approx(box[3], abs=1e-6 * t * 51)


def test_edge_cells_are_clipped_to_the_image_and_centres_are_tile_centres():
    geom = TileGeometry((2, 3), (100.0, 100.0), image_shape0=(150, 260))
    boxes = geom.boxes0(np.array([1, 0]), np.array([2, 0]))
    np.testing.assert_array_equal(boxes, [[200, 100, 260, 150], [0, 0, 100, 100]])
    np.testing.assert_array_equal(geom.centres0(np.array([1]), np.array([2])), [[150, 250]])


def test_a_map_over_one_cell_lies_inside_that_cell():
    geom = TileGeometry((4, 4), (64.0, 64.0))
    (sy, sx), (ty, tx) = geom.map_placement((16, 16), (0.5, 0.5), cell=(2, 3))
    # the first map pixel's top-left edge is the cell's top-left corner in level-0 pixels
    assert (ty - sy / 2) / 0.5 + 0.5 == pytest.approx(2 * 64)
    assert (tx - sx / 2) / 0.5 + 0.5 == pytest.approx(3 * 64)
    assert sy * 16 == pytest.approx(64 * 0.5)
