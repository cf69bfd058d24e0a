"""The widget scores through the Slide its layer was opened with, never reopening the file."""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt

from napari_her2._sample_data import ihc_mosaic
from napari_her2.slide import write_pyramid_tiff


def test_scoring_reuses_the_layers_slide(qtbot, make_napari_viewer, tmp_path, monkeypatch):
    from napari_her2._qt.widget import Her2ScoringWidget
    from napari_her2.run import pipeline

    path = write_pyramid_tiff(tmp_path / "s.tif", ihc_mosaic(rows=1, cols=2, gap=64), 0.5)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-her2")
    slide = viewer.layers["s"].metadata["napari_her2"]["slide"]

    def no_reopen(*args, **kwargs):
        pytest.fail("the widget opened the slide file again")

    monkeypatch.setattr(pipeline, "open_slide", no_reopen)
    widget = Her2ScoringWidget(viewer)
    qtbot.addWidget(widget)
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=60_000)
    assert widget.report is not None, widget.status.text()
    assert widget.report.slide is slide
