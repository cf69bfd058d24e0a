"""The widget under load: many small tiles, Score/Cancel in quick succession, the layer removed
and the widget closed mid-run; no error notification, every tile painted, no thread left."""

from __future__ import annotations

import threading

import numpy as np
from qtpy.QtCore import Qt

from napari_her2._sample_data import ihc_mosaic
from napari_her2.slide import write_pyramid_tiff

WAIT_MS = 120_000


def _our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("napari-her2")]


def _errors(monkeypatch) -> list[str]:
    """Every error notification the widget raises, collected instead of shown."""
    import napari.utils.notifications as notifications

    seen: list[str] = []
    monkeypatch.setattr(notifications, "show_error", lambda msg, *a, **k: seen.append(str(msg)))
    return seen


def _open(make_napari_viewer, path):
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-her2")
    _, widget = viewer.window.add_plugin_dock_widget("napari-her2", "HER2 scoring")
    widget.form.tile_spin.value = 32  # many small tiles
    return viewer, widget


def test_score_cancel_score_with_many_small_tiles(qtbot, make_napari_viewer, tmp_path,
                                                  monkeypatch):
    errors = _errors(monkeypatch)
    path = write_pyramid_tiff(tmp_path / "many.tif", ihc_mosaic(rows=2, cols=2, gap=64), 0.5)
    viewer, widget = _open(make_napari_viewer, path)
    for _ in range(3):  # a pathologist clicking fast
        qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
        qtbot.wait(30)
        qtbot.mouseClick(widget.run_panel.cancel_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=WAIT_MS)
        assert widget.panel.score_label.text() in ("not scored", "no call") or \
            widget.report is not None
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=WAIT_MS)
    report = widget.report
    assert report is not None, widget.status.text()
    tiles = viewer.layers["many HER2 tiles"].data
    assert len(report.results) > 500
    assert np.count_nonzero(tiles) == len(report.results)  # every scored tile painted
    np.testing.assert_array_equal(tiles, report.results.label_image())
    assert widget.progress.value() == widget.progress.maximum()
    assert errors == []
    qtbot.waitUntil(lambda: not _our_threads(), timeout=10_000)


def test_remove_the_layer_then_close_the_widget_mid_run(qtbot, make_napari_viewer, tmp_path,
                                                        monkeypatch):
    errors = _errors(monkeypatch)
    path = write_pyramid_tiff(tmp_path / "gone.tif", ihc_mosaic(rows=2, cols=2, gap=64), 0.5)
    viewer, widget = _open(make_napari_viewer, path)
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    qtbot.wait(50)
    viewer.layers.remove("gone")
    qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=WAIT_MS)
    viewer.open(str(path), plugin="napari-her2")
    widget.form.refresh_layers()
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    qtbot.wait(50)
    widget.close()
    qtbot.waitUntil(lambda: not _our_threads(), timeout=30_000)
    assert errors == []
