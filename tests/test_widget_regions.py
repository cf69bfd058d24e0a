"""The widget's Region chooser and the GeoJSON region reader, in a real napari viewer."""

from __future__ import annotations

import json
import shutil

import numpy as np
from qtpy.QtCore import Qt

from napari_her2.slide import write_pyramid_tiff

WAIT_MS = 60_000
MPP = 0.5


def fast_params(widget, monkeypatch):
    base = widget.form.params
    monkeypatch.setattr(widget.form, "params",
                        lambda: base().with_overrides(tile_size=64, target_mpp=0.5))


def score_and_wait(qtbot, widget):
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=WAIT_MS)
    assert widget.report is not None, widget.status.text()


def test_shapes_region_restricts_the_tile_layer(qtbot, viewer_widget, monkeypatch):
    viewer, widget = viewer_widget
    fast_params(widget, monkeypatch)
    # shapes drawn in world coordinates (µm): a rectangle and an ellipse, an Ignore box
    um = MPP
    rect = np.array([[100, 100], [100, 700], [600, 700], [600, 100]]) * um
    ellipse = np.array([[700, 600], [700, 1100], [1100, 1100], [1100, 600]]) * um
    ignore = np.array([[0, 0], [0, 400], [400, 400], [400, 0]]) * um
    viewer.add_shapes([rect, ellipse, ignore], shape_type=["rectangle", "ellipse", "rectangle"],
                      features={"class": ["tumour", "tumour", "Ignore"]}, name="invasive")
    assert widget.region.region_combo.choices == (None, "invasive")
    widget.region.region_combo.value = "invasive"
    score_and_wait(qtbot, widget)
    tiles = viewer.layers["ihc-small HER2 tiles"].data
    rows, cols = np.nonzero(tiles)
    T = widget.report.grid.tile_size0[0]
    x, y = (cols + 0.5) * T, (rows + 0.5) * T
    in_rect = (x > 100) & (x < 700) & (y > 100) & (y < 600)
    in_ellipse = np.hypot((x - 850) / 250, (y - 900) / 200) < 1.01
    ignored = (x < 400) & (y < 400)
    assert len(rows) > 10
    assert ((in_rect | in_ellipse) & ~ignored).all()
    assert len(widget.report.results) == len(rows)
    region = widget.report.to_dict()["region"]
    assert region["source"] == "invasive" and region["n_excluded_shapes"] == 1
    assert "region" in widget.scoring.context() and "mm²" in widget.scoring.context()["region"]


def test_whole_slide_by_default(qtbot, viewer_widget, monkeypatch):
    viewer, widget = viewer_widget
    fast_params(widget, monkeypatch)
    viewer.add_shapes([np.array([[0, 0], [0, 10], [10, 10], [10, 0]])], name="notes")
    assert widget.region.region_combo.value is None  # "Whole slide"
    score_and_wait(qtbot, widget)
    assert widget.report.region is None and len(widget.report.results) > 50


def test_region_without_tile_centre_is_a_one_line_error(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    viewer.add_shapes([np.array([[600, 600], [600, 601], [601, 601], [601, 600]]) * MPP],
                      shape_type="rectangle", name="tiny")
    widget.region.region_combo.value = "tiny"
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=WAIT_MS)
    assert widget.report is None
    text = widget.status.text()
    assert "no tile centre" in text and "tiny" in text and "\n" not in text


def test_geojson_opens_as_shapes_over_its_slide(qtbot, make_napari_viewer, small_slide, tmp_path):
    slide = tmp_path / "slide.tif"
    shutil.copy(small_slide, slide)
    roi = tmp_path / "slide.geojson"
    outer = [[100, 100], [700, 100], [700, 600], [100, 600], [100, 100]]
    hole = [[300, 300], [400, 300], [400, 400], [300, 400], [300, 300]]
    roi.write_text(json.dumps({"type": "Feature", "properties": {
        "classification": {"name": "Tumor"}}, "geometry": {
        "type": "Polygon", "coordinates": [outer, hole]}}))
    viewer = make_napari_viewer()
    viewer.open(str(slide), plugin="napari-her2")
    viewer.open(str(roi), plugin="napari-her2")
    shapes = viewer.layers["slide region"]
    assert list(shapes.features["class"]) == ["Tumor", "Exclude (hole)"]
    np.testing.assert_allclose(shapes.scale, [MPP, MPP])
    # the shapes lie over the slide: the polygon's corner (x=700, y=600) in world µm
    world = shapes.data_to_world(shapes.data[0][2])
    np.testing.assert_allclose(world, [600 * MPP, 700 * MPP])
    _, widget = viewer.window.add_plugin_dock_widget("napari-her2", "HER2 scoring")
    widget.region.region_combo.value = "slide region"
    region = widget.region.chosen_region(viewer.layers["slide"])
    inside = region.contains(np.array([[200, 200], [350, 350], [650, 550], [800, 200]]))
    assert inside.tolist() == [True, False, True, False]
    widget.jobs.stop()


def test_bad_geojson_notifies_and_opens_nothing(make_napari_viewer, tmp_path):
    from napari_her2._reader import get_region_reader

    bad = tmp_path / "bad.geojson"
    bad.write_text("{oops")
    reader = get_region_reader(str(bad))
    assert reader is not None and reader(str(bad)) == []
    assert get_region_reader(str(tmp_path / "x.tif")) is None


# ---------------------------------------------------------------------- TMA mode
def disc_tma(rows=2, cols=3, missing=("B2",), pitch=560, angle_deg=3.0) -> np.ndarray:
    """Discs of the IHC sample image on a slightly rotated grid, on white."""
    import math

    from skimage.data import immunohistochemistry

    from napari_her2.tma import core_id

    base = immunohistochemistry()[:440, :440]
    yy, xx = np.mgrid[:440, :440]
    disc = np.hypot(yy - 220, xx - 220) < 215
    canvas = np.full((rows * pitch + 400, cols * pitch + 400, 3), 255, np.uint8)
    a = math.radians(angle_deg)
    for r in range(rows):
        for c in range(cols):
            if core_id(r, c) in missing:
                continue
            ux, uy = 300 + c * pitch, 300 + r * pitch
            x = int(math.cos(a) * ux - math.sin(a) * uy) + 40
            y = int(math.sin(a) * ux + math.cos(a) * uy)
            patch = canvas[y : y + 440, x : x + 440]
            patch[disc] = np.rot90(base, r * cols + c)[disc]
    return canvas


def test_tma_mode_shows_cores_with_ids_and_scores(qtbot, make_napari_viewer, tmp_path,
                                                  monkeypatch):
    path = write_pyramid_tiff(tmp_path / "tma.tif", disc_tma(), MPP, tile=256)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-her2")
    _, widget = viewer.window.add_plugin_dock_widget("napari-her2", "HER2 scoring")
    fast_params(widget, monkeypatch)
    widget.tma.tma_check.value = True
    widget.tma.tma_grid.value = "2x3"
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=WAIT_MS)
    report = widget.tma.report
    assert report is not None, widget.status.text()
    cores = viewer.layers["tma TMA cores"]
    assert list(cores.features["core"]) == ["A1", "A2", "A3", "B1", "B2", "B3"]
    texts = dict(zip(cores.features["core"], cores.features["score"]))
    assert texts["B2"] == "missing"
    for s in report.scores:
        if not s.core.missing:
            assert texts[s.core.id] == (f"HER2 {s.call.score}" if s.call.score else "no call")
    assert sum(s.call.score is not None for s in report.scores) >= 4
    # the circles lie on the cores: core A1's centre in world µm maps back to its pixels
    a1 = report.tma.core("A1")
    centre = cores.data_to_world(cores.data[0].mean(axis=0))
    np.testing.assert_allclose(centre, np.array(a1.centre[::-1]) * MPP, atol=1)
    # Export writes the cores (CSV and QuPath GeoJSON), not a tile overlay
    assert widget.export_button.isEnabled()
    monkeypatch.setattr("qtpy.QtWidgets.QFileDialog.getExistingDirectory",
                        lambda *a, **k: str(tmp_path / "out"))
    qtbot.mouseClick(widget.export_button, Qt.MouseButton.LeftButton)
    rows = (tmp_path / "out" / "tma_cores.csv").read_text().splitlines()
    assert len(rows) == 1 + len(report.tma.cores)
    fc = json.loads((tmp_path / "out" / "tma_cores.geojson").read_text())
    assert {f["properties"]["name"] for f in fc["features"]} >= {"A1", "A3"}
    widget.jobs.stop()
