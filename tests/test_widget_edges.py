"""Tiles of the last row and column stop at the slide edge in napari, and hand edits of the
sub-tile raster are read back per tile by the review queue and the export."""

from __future__ import annotations

import json

import numpy as np
from qtpy.QtCore import Qt

from napari_her2._qt.layers import layer_raster, tile_labels, viewer_camera
from napari_her2.classes import LABEL_NAMES, LABEL_VALUES
from napari_her2.export import QUPATH_NAMES

WAIT_MS = 60_000


def score(qtbot, widget):
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=WAIT_MS)
    assert widget.report is not None, widget.status.text()


def world_edges(layer, shape) -> tuple[np.ndarray, np.ndarray]:
    """World (y, x) of the outer edges of a layer's first and last pixels (napari puts pixel
    centres at data coordinates 0 .. n - 1; ``extent.world`` spans those centres)."""
    scale, translate = np.asarray(layer.scale)[-2:], np.asarray(layer.translate)[-2:]
    return translate - scale / 2, translate + (np.asarray(shape) - 0.5) * scale


def test_edge_tiles_stop_at_the_slide_edge(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    image = viewer.layers["ihc-small"]
    score(qtbot, widget)
    tiles = viewer.layers["ihc-small HER2 tiles"]
    grid = widget.report.grid
    h0, w0 = grid.image_shape0
    T = grid.tile_size0[0]
    assert h0 % T and w0 % T, "the slide must not be a whole number of tiles"
    raster = layer_raster(tiles)
    assert raster.k > 1 and raster.grid_shape == grid.shape
    sub = T / raster.k * image.scale[-2:]  # one raster pixel in world units
    img_lo, img_hi = world_edges(image, image.level_shapes[0][:2])
    lo, hi = world_edges(tiles, tiles.data.shape)
    np.testing.assert_allclose(lo, img_lo, atol=1e-9)
    assert (hi >= img_hi - 1e-9).all() and (hi - img_hi <= sub + 1e-9).all()
    # every tile shows its class; the tile classes as the layer shows them are the model's
    np.testing.assert_array_equal(tile_labels(tiles), widget.report.results.label_image())
    # the mouse over the last (partial) tile finds that tile
    viewer.cursor.position = tuple((np.array([h0, w0]) - 2) * image.scale[-2:])
    assert widget.explain.tile_under_cursor() == (grid.shape[0] - 1, grid.shape[1] - 1)


def test_a_hand_edited_block_is_read_back_by_review_and_export(qtbot, viewer_widget, tmp_path):
    viewer, widget = viewer_widget
    score(qtbot, widget)
    qtbot.waitUntil(lambda: widget.review.review_list.queue is not None, timeout=WAIT_MS)
    tiles = viewer.layers["ihc-small HER2 tiles"]
    raster = layer_raster(tiles)
    res = widget.report.results
    i = int(np.flatnonzero(res.cols == res.cols.max())[0])  # a tile of the partial last column
    r, c = int(res.rows[i]), int(res.cols[i])
    old = int(tile_labels(tiles)[r, c])
    new = LABEL_VALUES["3+"] if old != LABEL_VALUES["3+"] else LABEL_VALUES["0"]
    tiles.data_setitem(raster.block(r, c), new)  # the fill tool over the tile's block
    qtbot.waitUntil(lambda: widget.review.review_log.n_changed == 1, timeout=5000)
    assert widget.review.review_log.n_reviewed == 1
    # a small brush dab on another tile leaves its class as it was
    j = (i + 1) % len(res)
    ys, xs = raster.block(int(res.rows[j]), int(res.cols[j]))
    tiles.data_setitem((ys[:1], xs[:1]), LABEL_VALUES["non-tumour"])
    qtbot.wait(50)
    assert widget.review.review_log.n_changed == 1
    fc = json.loads(widget.export_geojson(tmp_path / "t.geojson").read_text())
    assert len(fc["features"]) == len(res)
    feat = fc["features"][i]
    assert feat["properties"]["classification"]["name"] == QUPATH_NAMES[LABEL_NAMES[new]]
    assert feat["properties"]["measurements"]["original label value"] == old
    x0, y0, x1, y1 = res.bboxes0()[i]
    assert feat["geometry"]["coordinates"][0][0] == [x0, y0]
    # the review queue sets a class through the layer: one whole block, read back per tile
    widget.review.set_tile_class(r, c, LABEL_VALUES["1+"])
    assert set(np.unique(tiles.data[raster.block(r, c)])) == {LABEL_VALUES["1+"]}
    qtbot.waitUntil(lambda: {(t.row, t.col): t.new for t in widget.review.review_log}.get((r, c))
                    == "1+", timeout=5000)
    assert widget.review.review_log.n_changed == 1  # still one tile changed, now to 1+
    widget.review.go_to_tile(r, c)
    centre0 = (np.array([r, c]) + 0.5) * widget.report.grid.tile_size0
    image = viewer.layers["ihc-small"]
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:],
                               (centre0 - 0.5) * image.scale[-2:], atol=1e-6)
