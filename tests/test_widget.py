"""The HER2 scoring dock widget, driven as a user would, in a real napari viewer."""

from __future__ import annotations

import json
import threading

import numpy as np
from qtpy.QtCore import Qt

from napari_her2._qt.layers import layer_raster, tile_labels, viewer_camera
from napari_her2._qt.widget import Her2ScoringWidget
from napari_her2._sample_data import ihc_mosaic
from napari_her2.slide import write_pyramid_tiff

WAIT_MS = 60_000


def _score(qtbot, widget, small_batches: bool = False, monkeypatch=None):
    if small_batches:
        base = widget.form.params

        def params():
            p = base()
            return p.with_overrides(batch_size=2)

        monkeypatch.setattr(widget.form, "params", params)
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)  # Qt.LeftButton
    assert widget.jobs.worker is not None


def _wait_done(qtbot, widget):
    qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=WAIT_MS)


def test_widget_controls(viewer_widget):
    viewer, widget = viewer_widget
    assert widget.form.layer_combo.value == "ihc-small"
    assert widget.form.model_combo.choices[:2] == ("dab-cells", "dab-membrane")
    assert widget.score_button.text() == "Score"
    assert widget.export_button.text() == "Export GeoJSON…"
    assert not widget.run_panel.cancel_button.isEnabled()
    assert "0.5" in widget.form.mpp_info.value


def test_score_fills_an_aligned_tile_layer_and_the_panel(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    image = viewer.layers["ihc-small"]
    _score(qtbot, widget)
    assert widget.run_panel.cancel_button.isEnabled() and not widget.score_button.isEnabled()
    _wait_done(qtbot, widget)
    assert widget.report is not None, widget.status.text()
    tiles = viewer.layers["ihc-small HER2 tiles"]
    grid = widget.report.grid
    raster = layer_raster(tiles)  # k x k raster pixels per tile
    assert raster.grid_shape == grid.shape
    np.testing.assert_allclose(np.asarray(tiles.scale) * raster.k,
                               np.array(grid.tile_size0) * image.scale)
    # tile (r, c) covers level-0 pixels [r*T, (r+1)*T): its centre lands on the tile's centre
    T = grid.tile_size0[0]
    centre_world = (np.array([1, 2]) * T + (T - 1) / 2) * image.scale
    assert np.allclose(tiles.world_to_data(centre_world), raster.centre(1, 2))
    corner = (np.array([1, 2]) * T) * image.scale  # first level-0 pixel of that tile
    assert raster.tile_at(*tiles.world_to_data(corner + 0.49 * image.scale)[-2:]) == (1, 2)
    scored = tile_labels(tiles) > 0
    np.testing.assert_array_equal(scored, grid.tissue)
    assert widget.panel.score_label.text() == widget.report.call.score_text()
    assert widget.export_button.isEnabled() and widget.score_button.isEnabled()


def test_cancel_mid_run(qtbot, viewer_widget, monkeypatch):
    viewer, widget = viewer_widget
    cancelled = []

    def cancel_on_first_batch(item):
        if hasattr(item, "done") and not cancelled:
            cancelled.append(item.done)
            widget.cancel()

    _score(qtbot, widget, small_batches=True, monkeypatch=monkeypatch)
    widget.jobs.worker.yielded.connect(cancel_on_first_batch)
    _wait_done(qtbot, widget)
    assert cancelled
    assert widget.report is None
    assert widget.status.text().startswith("Cancelled")
    assert widget.panel.score_label.text() == "not scored"  # no partial call left
    tiles = viewer.layers["ihc-small HER2 tiles"]
    assert 0 < (tile_labels(tiles) > 0).sum() < widget.scoring.prepared.grid.n_tissue
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
    # the cells beside the tiles, as QuPath detections (no hand edit: as measured)
    cells = json.loads((tmp_path / "tiles.cells.geojson").read_text())
    assert len(cells["features"]) == len(widget.report.results.cells)
    assert {f["properties"]["objectType"] for f in cells["features"]} == {"detection"}
    assert not any("Tile relabelled by hand" in f["properties"]["measurements"]
                   for f in cells["features"])
    assert "cells to tiles.cells.geojson" in widget.status.text()


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
    qtbot.waitUntil(lambda: widget.panel.score_label.text() == "3+", timeout=5000)
    assert widget.panel.category_label.text() == "positive"


def _borderline_labels(labels: np.ndarray, results) -> tuple[np.ndarray, object]:
    """The tissue tiles of ``labels`` relabelled at the 0 / 1+ / 2+ boundary (2+ in about
    10%, one more 1+) so that the hand-edited call is borderline, and that call, computed as
    the widget rescores a hand edit (over the tiles' cells when the scorer counted cells)."""
    from napari_her2.classes import LABEL_VALUES
    from napari_her2.scoring import call_from_rule, score_cells, score_labels

    def rescore(edited):
        if results.cells is not None:
            return call_from_rule(score_cells(results, label_image=edited))
        return call_from_rule(score_labels(edited))

    cells = np.flatnonzero(labels.ravel() > 0)
    for n2 in range(1, len(cells) - 1):
        edited = labels.copy().ravel()
        edited[cells] = LABEL_VALUES["0"]
        edited[cells[:n2]] = LABEL_VALUES["2+"]
        edited[cells[n2]] = LABEL_VALUES["1+"]
        edited = edited.reshape(labels.shape)
        call = rescore(edited)
        if call.borderline is not None:
            return edited, call
    raise AssertionError(f"no borderline composition of {len(cells)} tiles")


def test_a_borderline_hand_edit_shows_both_scores(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    tiles = viewer.layers["ihc-small HER2 tiles"]
    raster = layer_raster(tiles)
    edited, call = _borderline_labels(tile_labels(tiles), widget.report.results)
    tiles.data = raster.expand(edited)
    tiles.events.paint(value=[])
    low, high = call.borderline
    qtbot.waitUntil(lambda: widget.panel.score_label.text() == f"{low} / {high}", timeout=5000)
    assert "review" in widget.panel.category_label.full_text()
    assert widget.panel.category_label.full_text() == call.category_text()
    assert "of resamplings" in widget.panel.confidence_label.full_text()


def test_slide_without_mpp_asks_for_it(qtbot, make_napari_viewer, tmp_path):
    path = tmp_path / "nompp.tif"
    write_pyramid_tiff(path, ihc_mosaic(rows=1, cols=2, gap=64), None)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-her2")
    widget = Her2ScoringWidget(viewer)
    qtbot.addWidget(widget)
    assert "no µm/px" in widget.form.mpp_info.value
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    assert widget.jobs.worker is None
    assert "nompp.tif" in widget.status.text() and "microns per pixel" in widget.status.text()
    widget.form.mpp_spin.value = 0.5
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    _wait_done(qtbot, widget)
    assert widget.report is not None
    assert tuple(viewer.layers["nompp"].scale) == (0.5, 0.5)


def test_closing_the_widget_mid_run_leaves_no_thread(qtbot, viewer_widget, monkeypatch):
    viewer, widget = viewer_widget
    _score(qtbot, widget, small_batches=True, monkeypatch=monkeypatch)
    qtbot.waitUntil(lambda: widget.scoring.prepared is not None, timeout=WAIT_MS)
    widget.close()
    qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=WAIT_MS)
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
    widget.form.add_checkpoint(path)
    assert widget.form.model_combo.value == str(path)
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    report = widget.report
    assert report is not None, widget.status.text()
    assert report.predictor.name == "her2-resnet-test"
    assert report.to_dict()["model"]["sha256"] == report.predictor.card.sha256
    assert widget.explain.gradcam_button.isEnabled()
    rows, cols = report.grid.tissue_tiles()
    r, c = int(rows[0]), int(cols[0])
    worker = widget.explain.explain_tile(r, c)
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        pass
    cam = viewer.layers["ihc-small Grad-CAM"]
    size = report.grid.tile_size  # the map comes back at the tile's own size
    assert cam.data.shape == (size, size)
    assert cam.colorbar.visible  # a colour bar says what the colours mean
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
    assert not widget.explain.gradcam_button.isEnabled()
    assert widget.explain.explain_tile(0, 0) is None
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


# --------------------------------------------------------------------------- review (issue 12)


def test_review_queue_navigates_edits_saves_and_reports(qtbot, viewer_widget, tmp_path,
                                                          monkeypatch):
    from napari_her2._qt import review as review_qt
    from napari_her2.export import read_review

    viewer, widget = viewer_widget
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    qtbot.waitUntil(lambda: widget.review.review_list.queue is not None, timeout=WAIT_MS)
    queue = widget.review.review_list.queue
    assert len(queue) > 0
    # a clear-cut 3+: no tile near its boundary, the queue lists the tiles that carry it
    assert queue.n_carrying == len(queue)
    assert widget.review.review_list.summary.text() == (
        f"no tile near a decisive boundary (2+/3+); then {len(queue)} that carry the call")
    widget.review.review_list.list.setCurrentRow(0)
    r, c = int(queue.rows[0]), int(queue.cols[0])
    tiles = viewer.layers["ihc-small HER2 tiles"]
    centre = tiles.data_to_world(layer_raster(tiles).centre(r, c))[-2:]
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], centre)
    assert viewer.layers.selection.active is tiles
    new = 1 if tile_labels(tiles)[r, c] != 1 else 4
    key = {1: Qt.Key.Key_0, 4: Qt.Key.Key_3}[new]
    qtbot.keyClick(widget.review.review_list.list, key)
    assert tile_labels(tiles)[r, c] == new
    qtbot.waitUntil(lambda: widget.review.review_log.n_changed == 1, timeout=5000)
    assert widget.review.review_list.list.currentRow() == min(1, len(queue) - 1)
    edited = widget.panel.last
    assert edited is not None and edited.method == widget.report.call.method
    widget.review.reviewer_edit.setText("Dr. R")
    out = widget.review.save_review(tmp_path / "s.review.geojson")
    saved = read_review(out)
    assert [(t.row, t.col, t.changed) for t in saved] == [(r, c, True)]
    png, pdf = widget.review.save_report(tmp_path / "s.report")
    assert png.stat().st_size > 10_000 and pdf.read_bytes().startswith(b"%PDF")
    # scoring again offers the saved review beside the slide
    monkeypatch.setattr(review_qt, "review_path", lambda p: out, raising=False)
    from napari_her2.export import review as review_export
    monkeypatch.setattr(review_export, "review_path", lambda p: out)
    asked = []
    monkeypatch.setattr(review_qt.QMessageBox, "question",
                        lambda *a, **k: asked.append(a) or review_qt.QMessageBox.StandardButton.Yes)
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    qtbot.waitUntil(lambda: bool(asked), timeout=WAIT_MS)
    assert tile_labels(tiles)[r, c] == new and widget.review.review_log.n_changed == 1


def test_hand_edit_is_recorded_and_export_keeps_probabilities(qtbot, viewer_widget, tmp_path):
    viewer, widget = viewer_widget
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    tiles = viewer.layers["ihc-small HER2 tiles"]
    rows, cols = np.nonzero(tile_labels(tiles))
    r, c = int(rows[0]), int(cols[0])
    new = 5 if tile_labels(tiles)[r, c] != 5 else 1
    tiles.data_setitem(layer_raster(tiles).block(r, c), new)  # the tile's k x k block
    qtbot.waitUntil(lambda: widget.review.review_log.n_changed == 1, timeout=5000)
    fc = json.loads(widget.export_geojson(tmp_path / "t.geojson").read_text())
    assert len(fc["features"]) == len(widget.report.results)
    meas = [f["properties"]["measurements"] for f in fc["features"]]
    assert all(any(k.startswith("p(") for k in m) for m in meas)
    assert sum("original label value" in m for m in meas) == 1
    # the cells of the relabelled tile carry the edit (label 5 is non-tumour, 1 is 0)
    results = widget.report.results
    mine = results.cell_tiles() == int(np.flatnonzero((results.rows == r)
                                                      & (results.cols == c))[0])
    cells = json.loads((tmp_path / "t.cells.geojson").read_text())["features"]
    edited = [f["properties"]["measurements"].get("Tile relabelled by hand") == 1.0
              for f in cells]
    np.testing.assert_array_equal(edited, mine)
    names = {f["properties"]["classification"]["name"] for f, m in zip(cells, mine) if m}
    assert names <= ({"Non-tumour"} if new == 5 else {"HER2 0", "Non-tumour"}), names
    # the cells layer shows them as the export writes them
    shown = widget.cells.cells
    assert mine.any() and len(shown) == len(cells)
    expected = [{"Non-tumour": -1, "HER2 0": 0, "HER2 1+": 1, "HER2 2+": 2,
                 "HER2 3+": 3}[f["properties"]["classification"]["name"]] for f in cells]
    np.testing.assert_array_equal(shown.cls, expected)


def test_tile_classes_are_named_on_the_layer(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    tiles = viewer.layers["ihc-small HER2 tiles"]
    names = dict(zip(tiles.features["index"], tiles.features["class"], strict=True))
    assert [names[v] for v in (1, 2, 3, 4, 5)] == ["0", "1+", "2+", "3+", "non-tumour"]


def test_panel_counts_match_the_progress_bar(qtbot, viewer_widget, monkeypatch):
    from napari_her2._qt import slide_scoring

    viewer, widget = viewer_widget
    monkeypatch.setattr(slide_scoring, "PANEL_INTERVAL_S", -1.0)
    seen = []

    def check(item):
        if hasattr(item, "done") and widget.panel.last is not None:
            seen.append((widget.panel.last.evidence.n_tiles, widget.progress.value()))

    _score(qtbot, widget, small_batches=True, monkeypatch=monkeypatch)
    widget.jobs.worker.yielded.connect(check)
    _wait_done(qtbot, widget)
    assert len(seen) > 2 and all(a == b for a, b in seen), seen
    tiles = viewer.layers["ihc-small HER2 tiles"]
    assert ((tile_labels(tiles) > 0) == widget.report.grid.tissue).all()  # every tile painted


def test_score_again_resets_the_progress_bar(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    assert widget.progress.value() == widget.progress.maximum() > 1
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    assert widget.progress.value() < widget.progress.maximum() or widget.progress.maximum() <= 1
    _wait_done(qtbot, widget)


def test_notifications_lead_with_the_reason(qtbot, viewer_widget, monkeypatch):
    import napari.utils.notifications as notes

    from napari_her2._qt.updates import NOTIFICATION_CHARS, notification_text

    viewer, widget = viewer_widget
    shown = []
    monkeypatch.setattr(notes, "show_error", shown.append)
    widget._fail("/very/long/folder/name/that/napari/would/cut/slide.svs: the file is truncated")
    assert shown == ["the file is truncated (slide.svs)"]
    long = notification_text("/a/b.svs: " + "x" * 300)
    assert len(long) <= NOTIFICATION_CHARS and long.endswith("(b.svs)")


def test_export_dialog_opens_in_the_slide_folder(qtbot, viewer_widget, small_slide,
                                                 monkeypatch):
    from napari_her2._qt import widget as widget_mod

    viewer, widget = viewer_widget
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    asked = []
    monkeypatch.setattr(widget_mod.QFileDialog, "getSaveFileName",
                        lambda parent, title, default, filt: asked.append(default) or ("", ""))
    assert widget.export_geojson() is None
    assert asked and asked[0].startswith(str(small_slide.parent))


def test_typing_a_slide_mpp_resets_the_view(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    widget.form.mpp_spin.value = 0.25
    widget.form.slide_source(widget.form.image_layer())
    image = viewer.layers["ihc-small"]
    extent = np.asarray(image.extent.world)[:, -2:]
    centre = np.asarray(viewer_camera(viewer).center[-2:])
    np.testing.assert_allclose(centre, extent.mean(axis=0), rtol=0.05, atol=1.0)


def test_small_tiles_score_without_a_note(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    widget.form.tile_spin.value = 128  # 64 µm at the sample's 0.5 µm/px
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    assert widget.report is not None, widget.status.text()
    assert widget.report.grid.tile_size == 128
    assert "Note:" not in widget.status.text()  # the sample's µm/px is in its file


def test_a_typed_slide_mpp_is_noted_when_scoring_is_done(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    widget.form.mpp_spin.value = 0.5  # the sample's own value, typed
    _score(qtbot, widget)
    _wait_done(qtbot, widget)
    assert widget.report is not None, widget.status.text()
    assert widget.report.slide.mpp_source == "user"
    assert "Note: µm/px given by hand" in widget.status.text()
