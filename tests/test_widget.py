"""The HER2 scoring dock widget, driven as a user would, in a real napari viewer."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_her2._qt.widget import Her2ScoringWidget
from napari_her2._sample_data import ihc_mosaic
from napari_her2.slide import write_pyramid_tiff

WAIT_MS = 60_000


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("widget") / "ihc-small.tif"
    write_pyramid_tiff(path, ihc_mosaic(rows=2, cols=2, gap=64), 0.5, tile=256)
    return path


@pytest.fixture
def viewer_widget(make_napari_viewer, small_slide):
    viewer = make_napari_viewer()
    viewer.open(str(small_slide), plugin="napari-her2")
    _, widget = viewer.window.add_plugin_dock_widget("napari-her2", "HER2 scoring")
    assert isinstance(widget, Her2ScoringWidget)
    yield viewer, widget
    widget._stop_worker()


def _score(qtbot, widget, small_batches: bool = False, monkeypatch=None):
    if small_batches:
        base = widget.params

        def params():
            p = base()
            return p.with_overrides(batch_size=2)

        monkeypatch.setattr(widget, "params", params)
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)  # Qt.LeftButton
    assert widget.worker is not None


def _wait_done(qtbot, widget):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)


def test_widget_controls(viewer_widget):
    viewer, widget = viewer_widget
    assert widget.layer_combo.value == "ihc-small"
    assert widget.model_combo.choices[0] == "dab-membrane"
    assert widget.score_button.text() == "Score"
    assert widget.export_button.text() == "Export GeoJSON…"
    assert not widget.cancel_button.isEnabled()
    assert "0.5" in widget.mpp_info.value


def test_score_fills_an_aligned_tile_layer_and_the_panel(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    image = viewer.layers["ihc-small"]
    _score(qtbot, widget)
    assert widget.cancel_button.isEnabled() and not widget.score_button.isEnabled()
    _wait_done(qtbot, widget)
    assert widget.report is not None, widget.status.text()
    tiles = viewer.layers["ihc-small HER2 tiles"]
    grid = widget.report.grid
    assert tiles.data.shape == grid.shape
    np.testing.assert_allclose(tiles.scale, np.array(grid.tile_size0) * image.scale)
    # tile (r, c) covers level-0 pixels [r*T, (r+1)*T): its centre lands on the tile pixel
    T = grid.tile_size0[0]
    centre_world = (np.array([1, 2]) * T + (T - 1) / 2) * image.scale
    assert np.allclose(tiles.world_to_data(centre_world), [1, 2])
    corner = (np.array([1, 2]) * T) * image.scale  # first level-0 pixel of that tile
    assert np.allclose(np.round(tiles.world_to_data(corner + 0.49 * image.scale)), [1, 2])
    scored = tiles.data > 0
    np.testing.assert_array_equal(scored, grid.tissue)
    assert widget.panel.score_label.text() == str(widget.report.call.score)
    assert widget.export_button.isEnabled() and widget.score_button.isEnabled()


def test_cancel_mid_run(qtbot, viewer_widget, monkeypatch):
    viewer, widget = viewer_widget
    cancelled = []

    def cancel_on_first_batch(item):
        if hasattr(item, "done") and not cancelled:
            cancelled.append(item.done)
            widget.cancel()

    _score(qtbot, widget, small_batches=True, monkeypatch=monkeypatch)
    widget.worker.yielded.connect(cancel_on_first_batch)
    _wait_done(qtbot, widget)
    assert cancelled
    assert widget.report is None
    assert widget.status.text().startswith("Cancelled")
    assert widget.panel.score_label.text() == "not scored"  # no partial call left
    tiles = viewer.layers["ihc-small HER2 tiles"]
    assert 0 < (tiles.data > 0).sum() < widget.prepared.grid.n_tissue
    assert not [t for t in threading.enumerate() if t.name.startswith("napari-her2-read")]


def test_export_geojson(qtbot, viewer_widget, tmp_path):
    viewer, widget = viewer_widget
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    out = widget.export_geojson(tmp_path / "tiles.geojson")
    fc = json.loads(out.read_text())
    assert fc["type"] == "FeatureCollection"
    assert len(fc["features"]) == len(widget.report.results)
    feat = fc["features"][0]
    assert feat["properties"]["classification"]["color"]
    ring = feat["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1]


def test_hand_edit_updates_the_panel(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    tiles = viewer.layers["ihc-small HER2 tiles"]
    rows, cols = np.nonzero(tiles.data)
    data = tiles.data.copy()
    data[rows, cols] = 4  # a pathologist marks every tumour tile 3+
    tiles.data = data
    tiles.events.paint(value=[])
    assert widget.panel.score_label.text() == "3+"
    assert widget.panel.category_label.text() == "positive"


def test_slide_without_mpp_asks_for_it(qtbot, make_napari_viewer, tmp_path):
    path = tmp_path / "nompp.tif"
    write_pyramid_tiff(path, ihc_mosaic(rows=1, cols=2, gap=64), None)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-her2")
    widget = Her2ScoringWidget(viewer)
    qtbot.addWidget(widget)
    assert "no µm/px" in widget.mpp_info.value
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    assert widget.worker is None
    assert "nompp.tif" in widget.status.text() and "microns per pixel" in widget.status.text()
    widget.mpp_spin.value = 0.5
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    _wait_done(qtbot, widget)
    assert widget.report is not None
    assert tuple(viewer.layers["nompp"].scale) == (0.5, 0.5)


def test_closing_the_widget_mid_run_leaves_no_thread(qtbot, viewer_widget, monkeypatch):
    viewer, widget = viewer_widget
    _score(qtbot, widget, small_batches=True, monkeypatch=monkeypatch)
    qtbot.waitUntil(lambda: widget.prepared is not None, timeout=WAIT_MS)
    widget.close()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    assert not [t for t in threading.enumerate() if t.name.startswith("napari-her2-read")]


def _random_checkpoint(folder):
    from napari_her2.models import ModelCard, get_model, save_checkpoint

    path = folder / "her2-resnet-test.safetensors"
    card = ModelCard(architecture="her2-resnet", classes=("0", "1+", "2+", "3+"), input_size=64,
                     target_mpp=0.5, name="her2-resnet-test", description="random weights")
    save_checkpoint(path, get_model("her2-resnet", num_classes=4), card)
    return path


def test_score_with_a_checkpoint_and_explain_a_tile(qtbot, viewer_widget, tmp_path):
    viewer, widget = viewer_widget
    path = _random_checkpoint(tmp_path)
    widget.add_checkpoint(path)
    assert widget.model_combo.value == str(path)
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    report = widget.report
    assert report is not None, widget.status.text()
    assert report.predictor.name == "her2-resnet-test"
    assert report.to_dict()["model"]["sha256"] == report.predictor.card.sha256
    assert widget.gradcam_button.isEnabled()
    rows, cols = report.grid.tissue_tiles()
    r, c = int(rows[0]), int(cols[0])
    worker = widget.explain_tile(r, c)
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        pass
    cam = viewer.layers["ihc-small Grad-CAM"]
    size = report.grid.tile_size  # the map comes back at the tile's own size
    assert cam.data.shape == (size, size)
    assert 0.0 <= cam.data.min() and cam.data.max() <= 1.0
    # the map covers exactly tile (r, c): its corners map to the tile's level-0 corners
    image = viewer.layers["ihc-small"]
    T = report.grid.tile_size0[0]
    first = cam.data_to_world((0, 0)) / image.scale  # centre of the first map pixel, level 0
    px0 = T / size
    np.testing.assert_allclose(first, [r * T + (px0 - 1) / 2, c * T + (px0 - 1) / 2])


def test_gradcam_is_refused_for_the_weight_free_scorer(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    assert not widget.gradcam_button.isEnabled()
    assert widget.explain_tile(0, 0) is None
    assert "CNN checkpoint" in widget.status.text()


def test_removing_the_image_layer_mid_run_cancels(qtbot, viewer_widget, monkeypatch):
    viewer, widget = viewer_widget
    _score(qtbot, widget, small_batches=True, monkeypatch=monkeypatch)
    viewer.layers.remove("ihc-small")
    _wait_done(qtbot, widget)
    assert widget.report is None
    assert widget.status.text().startswith("Cancelled")
    assert widget.panel.score_label.text() == "not scored"  # no partial call left
    assert not [t for t in threading.enumerate() if t.name.startswith("napari-her2-read")]
