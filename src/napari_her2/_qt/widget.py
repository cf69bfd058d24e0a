"""The **HER2 scoring** dock widget: panels over one scoring controller.

The widget builds the panels and wires their signals; each panel owns its controls:

- ``form`` (:class:`FormPanel`): image layer, models, tile geometry, organ, the slide's µm/px;
- ``region`` (:class:`RegionPanel`) and ``tma`` (:class:`TmaPanel`): where and how to score;
- ``run_panel`` (:class:`RunPanel`): Score, Cancel, the progress bar and the status line;
- ``panel`` (:class:`ScorePanel`): the slide's call; ``explain`` (:class:`ExplainPanel`):
  Grad-CAM and attention; ``review`` (:class:`ReviewPanel`): the review queue and saving;
- ``cells`` (:class:`CellsOverlay`): the cells a scorer found, drawn when zoomed in.

``scoring`` (:class:`SlideScoring`) runs a slide through ``jobs`` (:class:`JobRunner`, at most
one worker per widget) and keeps the report; Cancel, removing the image layer or closing the
widget stops the worker within one batch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QFileDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import Her2Error
from .cells import CellsOverlay
from .controls import FormPanel, RunPanel
from .explain import ExplainPanel
from .jobs import JobRunner, error_text
from .layers import tile_labels
from .panel import ScrollColumn
from .regions import RegionPanel
from .review import ReviewPanel
from .score_panel import ScorePanel
from .slide_scoring import SlideScoring
from .tma_panel import TmaPanel
from .updates import notification_text

if TYPE_CHECKING:
    import napari

    from ..run.pipeline import SlideReport

log = logging.getLogger(__name__)


class Her2ScoringWidget(QWidget):
    """Dock widget: choose a slide layer and a model, press Score, watch tiles fill in."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        # no Qt parent: it must outlive the widget's children to stop the job on destroyed
        self.jobs = JobRunner()
        self.scoring = SlideScoring(napari_viewer, self.jobs, self)
        self.form = FormPanel(napari_viewer, self)
        self.region = RegionPanel(napari_viewer, self)
        self.tma = TmaPanel(napari_viewer, self.scoring, self)
        self.run_panel = RunPanel(self)
        self.panel = ScorePanel(self)
        self.export_button = QPushButton("Export GeoJSON…")
        self.export_button.setEnabled(False)
        self.explain = ExplainPanel(napari_viewer, self.scoring, self)
        self.review = ReviewPanel(napari_viewer, self.scoring, self)
        self.cells = CellsOverlay(napari_viewer, self)
        self._lay_out()
        self._connect()

    def _lay_out(self) -> None:
        """The panels in one column that scrolls: a short dock (or screen) scrolls the widget
        instead of squeezing a line of text below its height."""
        body = QWidget()
        column = QVBoxLayout(body)
        for part in (self.form, self.region, self.tma, self.run_panel, self.panel,
                     self.export_button, self.explain, self.review):
            column.addWidget(part)
        column.addStretch(1)
        scroll = ScrollColumn(self)
        scroll.setWidget(body)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

    def _connect(self) -> None:
        jobs, scoring, run = self.jobs, self.scoring, self.run_panel
        run.score_button.clicked.connect(self.start_scoring)
        run.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self.export_clicked)
        jobs.started.connect(self._on_started)
        jobs.cancelling.connect(self._on_cancelling)
        jobs.errored.connect(self._on_errored)
        jobs.finished.connect(self._on_finished)
        scoring.run_begun.connect(self.tma.forget)
        scoring.call_shown.connect(self.panel.show_call)
        scoring.call_cleared.connect(self.panel.clear)
        scoring.report_ready.connect(self.review.start)
        scoring.report_ready.connect(self.explain.show_report_attention)
        scoring.report_ready.connect(self._show_cells)
        scoring.tiles_edited.connect(self.review.record_edits)
        scoring.cells_edited.connect(self.cells.update)  # the cells the edited call counts
        for source in (scoring, self.tma):
            source.progress_range.connect(run.reset_progress)
            source.progress.connect(run.progress.setValue)
        for talker in (scoring, self.tma, self.explain, self.review):
            talker.message.connect(run.status.setText)
        for panel in (self.tma, self.explain, self.review):
            panel.failed.connect(self._fail)
        self.destroyed.connect(jobs.stop)

    # ------------------------------------------------------------------ the widget's face
    @property
    def report(self) -> SlideReport | None:
        """The last finished slide report (None while scoring, after a cancel or a TMA run)."""
        return self.scoring.report

    @property
    def score_button(self) -> QPushButton:
        return self.run_panel.score_button

    @property
    def status(self) -> QLabel:
        return self.run_panel.status

    @property
    def progress(self) -> QProgressBar:
        return self.run_panel.progress

    # ------------------------------------------------------------------ running
    def start_scoring(self) -> None:
        """Score the selected layer in a worker thread (Score button): the whole slide or
        the chosen region, or core by core in TMA mode."""
        layer = self.form.image_layer()
        try:
            source, mpp = self.form.slide_source(layer)
            params = self.form.params()
            region = self.region.chosen_region(layer)
        except Her2Error as err:
            self._fail(str(err))
            return
        self.review.reset()  # a new run: the last run's queue no longer applies
        if self.tma.enabled():
            self.tma.start(layer, source, mpp, params)
            return
        self.scoring.start(layer, source, mpp, params, region)

    def _show_cells(self, report: SlideReport) -> None:
        """The cells of a scorer that finds cells, as ``<image> cells`` (drawn zoomed in)."""
        image = self.viewer.layers[self.scoring.image_name]
        self.cells.show(image, report.results.cells)

    def cancel(self) -> None:
        """Stop the running worker within one batch (Cancel button)."""
        self.jobs.cancel()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.jobs.stop()
        super().closeEvent(event)

    def _on_started(self, status: str) -> None:
        self._set_running(True)
        self.status.setText(status)

    def _on_cancelling(self) -> None:
        self.status.setText("Cancelling…")

    def _on_errored(self, err: BaseException) -> None:
        self._fail(error_text(err))

    def _on_finished(self) -> None:
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.run_panel.set_running(running)
        self.export_button.setEnabled(
            not running and (self.scoring.report is not None or self.tma.report is not None))
        self.review.set_running(running)
        self.explain.set_running(running)

    def _fail(self, message: str) -> None:
        """Say what went wrong: the reason first, one short line (the full text in the log)."""
        from napari.utils.notifications import show_error

        short = notification_text(message)
        log.warning("%s", message)
        self.status.setText(message)
        show_error(short)

    # ------------------------------------------------------------------ export
    def export_clicked(self) -> None:
        """Export what was scored last: the cores after a TMA run, else the tile overlay."""
        if self.tma.report is not None:
            self.tma.export()
        else:
            self.export_geojson()

    def export_geojson(self, path: str | Path | None = None) -> Path | None:
        """Write the tile overlay as QuPath GeoJSON (asks for a path when none is given) and,
        when the scorer found cells, the cells beside it as QuPath detections
        (``<name>.cells.geojson``); both with the hand edits of the tile layer."""
        from ..export import write_geojson
        from ..export.cells import write_edited_cells
        from ..export.review import corrected_tiles_geojson

        report, tiles = self.scoring.report, self.scoring.tiles_layer
        if report is None or tiles is None:
            self._fail("nothing to export: score a slide first")
            return None
        if path is None:
            default = str(report.slide.path.parent / f"{report.stem}.geojson")
            path, _ = QFileDialog.getSaveFileName(self, "Export GeoJSON", default,
                                                  "GeoJSON (*.geojson *.json)")
            if not path:
                return None
        labels = tile_labels(tiles)
        fc = corrected_tiles_geojson(report.results, labels, name=report.stem)
        try:
            written = write_geojson(Path(path), fc)
            text = f"Wrote {written}"
            mpp = report.slide.mpp
            beside = write_edited_cells(written.with_name(f"{written.stem}.cells.geojson"),
                                        report.results, labels, report.stem,
                                        mpp.x if mpp else 1.0)
            if beside is not None:
                text += f" and {len(report.results.cells or ()):,} cells to {beside.name}"
        except Her2Error as err:
            self._fail(str(err))
            return None
        self.status.setText(text)
        return written

