"""The cells layer stays light on a whole slide: empty when zoomed out, only the cells in
view (at most MAX_DRAWN) when zoomed in, coloured by class with the cells' features."""

from __future__ import annotations

import numpy as np

from napari_her2._qt.cells import DRAW_BELOW_UM_PER_PX, MAX_DRAWN, CellsOverlay
from napari_her2._qt.layers import viewer_camera
from napari_her2.classes import CLASS_COLORS
from napari_her2.predict import NOT_TUMOUR, CellColumns
from napari_her2.tiles.cells import CellTable
from napari_her2.tiles.grid import TileGeometry

MPP = 0.5
SIDE0 = 4000  # level-0 px: a 2 mm field


def many_cells(n: int) -> CellTable:
    rng = np.random.default_rng(0)
    table = CellTable()
    cols = CellColumns(tile=np.zeros(n, np.int64), y=rng.uniform(0, SIDE0, n),
                       x=rng.uniform(0, SIDE0, n),
                       cls=rng.choice([0, 1, 2, 3, NOT_TUMOUR], n).astype(np.int8),
                       ring_od=rng.uniform(0, 1, n), completeness=rng.uniform(0, 1, n),
                       visible_mpp=np.full(n, np.nan), nucleus_um2=np.full(n, 50.0))
    table.extend(cols, np.array([0]), np.array([0]), (SIDE0, SIDE0),
                 TileGeometry((1, 1), (float(SIDE0), float(SIDE0))))
    return table


def test_cells_are_drawn_only_zoomed_in_and_only_in_view(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((SIDE0, SIDE0, 3), np.uint8), rgb=True,
                             scale=(MPP, MPP), name="slide")
    overlay = CellsOverlay(viewer)
    cells = many_cells(300_000)
    viewer.reset_view()
    overlay.show(image, cells)
    layer = viewer.layers["slide cells"]
    camera = viewer_camera(viewer)
    assert 1 / camera.zoom > DRAW_BELOW_UM_PER_PX and len(layer.data) == 0, "zoomed out"

    camera.zoom = 1.0  # 1 µm per screen pixel
    camera.center = (500.0, 700.0)
    qtbot.waitUntil(lambda: len(layer.data) > 0, timeout=5_000)
    y0, x0, y1, x1 = overlay.view_box0()
    assert 0 < len(layer.data) <= MAX_DRAWN
    assert y0 < 1000 < y1 and x0 < 1400 < x1, "the view box holds the camera's centre"
    inside = ((layer.data[:, 0] >= y0) & (layer.data[:, 0] < y1)
              & (layer.data[:, 1] >= x0) & (layer.data[:, 1] < x1))
    assert inside.all()
    assert set(layer.features.columns) == {"class", "membrane_od", "membrane_od_max",
                                           "completeness", "cytoplasm_od", "tumour",
                                           "outlined_by_dab"}
    assert layer.features["cytoplasm_od"].isna().all()  # these stand-in cells lack it
    first = layer.features["class"].iloc[0]
    np.testing.assert_allclose(layer.face_color[0][:3], np.array(CLASS_COLORS[first]) / 255,
                               atol=1e-6)

    # hidden, the layer is not refilled as the view moves (napari would not reslice it, and a
    # later colour change would index past its data); shown again, it catches up
    layer.visible = False
    before = layer.data.copy()
    camera.zoom, camera.center = 4.0, (1500.0, 1500.0)  # fewer cells in a smaller view
    overlay.refresh()
    np.testing.assert_array_equal(layer.data, before)
    layer.visible = True
    qtbot.waitUntil(lambda: overlay.view_box0()[0] < layer.data[:, 0].min(), timeout=5_000)
    y0, x0, y1, x1 = overlay.view_box0()
    assert ((layer.data[:, 0] >= y0) & (layer.data[:, 0] < y1)).all()

    camera.zoom = 0.01  # zoomed out again: nothing drawn
    qtbot.waitUntil(lambda: len(layer.data) == 0, timeout=5_000)
    viewer.layers.remove(layer)
    overlay.refresh()  # a removed layer is forgotten, not re-added
    assert "slide cells" not in viewer.layers


def test_scoring_with_dab_cells_adds_the_cells_layer(qtbot, viewer_widget):
    from qtpy.QtCore import Qt

    viewer, widget = viewer_widget
    widget.form.model_combo.value = "dab-cells"
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=120_000)
    report = widget.report
    assert report is not None, widget.status.text()
    assert report.results.cells is not None and len(report.results.cells) > 0
    name = f"{widget.scoring.image_name} cells"
    assert name in viewer.layers
    assert widget.cells.cells is report.results.cells
    from napari_her2.tiles.cells import outlined_text

    summary = report.to_dict()["cells"]
    text = widget.panel.cells_label.full_text()
    assert text.startswith(f"{summary['n_tumour_cells']:,} tumour of ")
    # how many tumour cells DAB outlines only, when there are any (the sample has some)
    assert summary["n_tumour_outlined"] > 0 and text.endswith(f"; {outlined_text(summary)}")


def test_a_40x_slide_is_scored_at_40x_and_its_cells_lie_on_it(qtbot, make_napari_viewer,
                                                               tmp_path):
    """Model default on a ×40 scan: 512 px tiles at 0.25 µm/px (128 µm, as at ×20), the tile
    layer and the cells placed on the slide in its own level-0 pixels."""
    from qtpy.QtCore import Qt

    from napari_her2._qt.widget import Her2ScoringWidget
    from napari_her2._sample_data import ihc_mosaic
    from napari_her2.slide import write_pyramid_tiff

    path = write_pyramid_tiff(tmp_path / "x40.tif", ihc_mosaic(rows=2, cols=2, gap=64), 0.25,
                              tile=256)
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(path), plugin="napari-her2")
    _, widget = viewer.window.add_plugin_dock_widget("napari-her2", "HER2 scoring")
    assert isinstance(widget, Her2ScoringWidget)
    try:
        widget.form.model_combo.value = "dab-cells"
        qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=120_000)
        report = widget.report
        assert report is not None, widget.status.text()
        assert (report.grid.tile_size, report.grid.target_mpp) == (512, 0.25)
        assert "µm/px 0.25" in widget.panel.model_label.full_text()
        cells = report.results.cells
        assert cells is not None and len(cells) > 0
        h, w = report.slide.dimensions
        assert cells.y0.min() >= 0 and cells.y0.max() < h and cells.x0.min() >= 0
        assert cells.x0.max() < w
        # over the whole mosaic, not crowded into a corner by a tile-size mix-up
        assert cells.y0.max() > 0.75 * h and cells.x0.max() > 0.75 * w
        assert f"{image.name} HER2 tiles" in viewer.layers
    finally:
        widget.jobs.stop()
