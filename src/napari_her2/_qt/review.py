"""The review queue: the tiles that matter most for the call, stepped through by keyboard.

:class:`ReviewList` shows a :class:`~napari_her2.scoring.review.ReviewQueue` (class, probability,
reason per row). Up / Down move through it; 0, 1, 2, 3 and N set the current tile's class
(N: non-tumour) and move on. :class:`ReviewPanel` holds the list, the reviewer, the corrections
and the save buttons: choosing a row centres and zooms the viewer on the tile, a class change
goes through the tile layer (so napari's undo and the hand-edit rescoring see it) and is
recorded with the original class, the time and the reviewer; "Save review…" writes
``<stem>.review.geojson`` beside the slide.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..classes import LABEL_NAMES, LABEL_VALUES, NON_TUMOUR
from ..errors import Her2Error
from ..scoring.review import ReviewLog, ReviewQueue, rank_tiles
from .layers import layer_raster, tile_labels, viewer_camera
from .panel import ScoringPanel

if TYPE_CHECKING:
    import napari

    from ..run.pipeline import SlideReport
    from .slide_scoring import SlideScoring

log = logging.getLogger(__name__)

#: key -> label value of the class it sets
CLASS_KEYS: dict[int, int] = {
    Qt.Key.Key_0: LABEL_VALUES["0"],
    Qt.Key.Key_1: LABEL_VALUES["1+"],
    Qt.Key.Key_2: LABEL_VALUES["2+"],
    Qt.Key.Key_3: LABEL_VALUES["3+"],
    Qt.Key.Key_N: LABEL_VALUES[NON_TUMOUR],
}
#: tiles across the shorter side of the canvas after zooming onto one
TILES_IN_VIEW = 5
#: slides with up to this many tiles rank on the UI thread (a few ms); more in a worker
RANK_IN_UI_THREAD = 10_000


class ReviewList(QWidget):
    """List view of a review queue with keyboard shortcuts for the tile classes."""

    tile_chosen = Signal(int, int)
    class_set = Signal(int, int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.queue: ReviewQueue | None = None
        self.list = QListWidget()
        self.list.setToolTip("Up/Down: next tile; 0, 1, 2, 3: set HER2 class; N: non-tumour")
        self.list.installEventFilter(self)
        self.list.currentRowChanged.connect(self._on_row)
        # a click (or Enter) on the row that is already current takes the viewer back to its
        # tile too: the pathologist may have panned away since
        self.list.itemClicked.connect(self._on_item)
        self.list.itemActivated.connect(self._on_item)
        self.summary = QLabel("Score a slide to list the tiles to review.")
        self.summary.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.list)

    def set_queue(self, queue: ReviewQueue | None, reviewed: ReviewLog | None = None) -> None:
        """Show ``queue`` (None: empty), ticking the tiles already reviewed."""
        self.queue = queue
        with _blocked(self.list):
            self.list.clear()
            if queue is not None:
                for i in range(len(queue)):
                    self.list.addItem(_queue_item(queue, i, reviewed))
        if queue is None:
            self.summary.setText("Score a slide to list the tiles to review.")
        else:
            bounds = ", ".join(queue.boundaries) or "none"
            near = len(queue) - queue.n_carrying
            text = (f"{near} tiles to review (decisive boundaries: {bounds})" if near else
                    f"no tile near a decisive boundary ({bounds})")
            if queue.n_carrying:
                text += f"; then {queue.n_carrying} that carry the call"
            if queue.borderline is not None:
                text += (f"; borderline {' / '.join(queue.borderline)}: the first "
                         f"{queue.n_deciding} decide it")
            self.summary.setText(text)

    def cell(self, i: int | None = None) -> tuple[int, int] | None:
        """(row, col) of list entry ``i`` (default: the current one)."""
        i = self.list.currentRow() if i is None else i
        if self.queue is None or not 0 <= i < len(self.queue):
            return None
        return int(self.queue.rows[i]), int(self.queue.cols[i])

    def mark(self, i: int, value: int) -> None:
        """Show entry ``i`` as reviewed with class ``value``."""
        item = self.list.item(i)
        if item is not None and self.queue is not None:
            text = self.queue.row_text(i)
            item.setText(f"✓ {LABEL_NAMES.get(value, '?')} ← {text}")

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if obj is self.list and event.type() == event.Type.KeyPress:
            value = CLASS_KEYS.get(event.key())
            if value is not None:
                self.set_current_class(value)
                return True
        return super().eventFilter(obj, event)

    def set_current_class(self, value: int) -> None:
        """Set the current tile's class, mark it, and move to the next entry."""
        i = self.list.currentRow()
        cell = self.cell(i)
        if cell is None:
            return
        self.class_set.emit(*cell, value)
        self.mark(i, value)
        if i + 1 < self.list.count():
            self.list.setCurrentRow(i + 1)

    def _on_item(self, item: QListWidgetItem) -> None:
        self._on_row(self.list.row(item))

    def _on_row(self, i: int) -> None:
        cell = self.cell(i)
        if cell is not None:
            self.tile_chosen.emit(*cell)


def _queue_item(queue: ReviewQueue, i: int, reviewed: ReviewLog | None) -> QListWidgetItem:
    """List entry ``i`` of ``queue``, ticked when its tile is in ``reviewed``."""
    item = QListWidgetItem(queue.row_text(i))
    cell = (int(queue.rows[i]), int(queue.cols[i]))
    if reviewed is not None and cell in reviewed:
        item.setText("✓ " + item.text())
    return item


class _blocked:
    """Block a Qt object's signals inside a ``with`` block."""

    def __init__(self, obj) -> None:
        self.obj = obj

    def __enter__(self) -> None:
        self.old = self.obj.blockSignals(True)

    def __exit__(self, *exc) -> None:
        self.obj.blockSignals(self.old)


class ReviewPanel(ScoringPanel):
    """Review queue, corrections and saved reviews and reports of the scored slide."""

    def __init__(self, viewer: napari.Viewer, scoring: SlideScoring,
                 parent: QWidget | None = None) -> None:
        super().__init__(viewer, scoring, parent)
        self.review_log = ReviewLog()
        self._shown_labels: np.ndarray | None = None
        self.review_list = ReviewList(self)
        self.reviewer_edit = QLineEdit()
        self.reviewer_edit.setPlaceholderText("Reviewer (optional)")
        self.save_review_button = QPushButton("Save review…")
        self.save_report_button = QPushButton("Save report…")
        for button in (self.save_review_button, self.save_report_button):
            button.setEnabled(False)
        row = QHBoxLayout()
        row.addWidget(self.save_review_button)
        row.addWidget(self.save_report_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Review queue"))
        layout.addWidget(self.reviewer_edit)
        layout.addWidget(self.review_list)
        layout.addLayout(row)
        self.review_list.tile_chosen.connect(self.go_to_tile)
        self.review_list.class_set.connect(self.set_tile_class)
        self.save_review_button.clicked.connect(lambda: self.save_review())
        self.save_report_button.clicked.connect(lambda: self.save_report())

    def set_running(self, running: bool) -> None:
        """Saving needs a finished report and no job running."""
        ready = not running and self.scoring.report is not None
        self.save_review_button.setEnabled(ready)
        self.save_report_button.setEnabled(ready)

    # ------------------------------------------------------------------ queue
    def reset(self) -> None:
        """A new run: no queue, no corrections."""
        self.review_log = ReviewLog()
        self._shown_labels = None
        self.review_list.set_queue(None)

    def start(self, report: SlideReport) -> None:
        """Rank the finished report's tiles and show the queue (offers a saved review)."""
        from napari.qt.threading import create_worker

        tiles = self.scoring.tiles_layer
        if tiles is None:  # its tile layer was closed
            return
        self.review_log = ReviewLog(reviewer=self._reviewer())
        self._shown_labels = np.array(tile_labels(tiles), copy=True)
        if len(report.results) <= RANK_IN_UI_THREAD:
            self._show_queue(report, rank_tiles(report.results, report.call))
            return
        # ranking 100,000 tiles takes ~0.1 s: off the UI thread
        worker = create_worker(rank_tiles, report.results, report.call, _start_thread=False)
        worker.returned.connect(lambda queue: self._show_queue(report, queue))
        worker.start()

    def _show_queue(self, report: SlideReport, queue: ReviewQueue) -> None:
        if report is not self.scoring.report:  # a newer run started meanwhile
            return
        try:
            self.review_list.set_queue(queue, self.review_log)
        except RuntimeError:  # the widget was closed while the queue was ranked
            return
        self._offer_saved_review(report)

    def go_to_tile(self, row: int, col: int) -> None:
        """Centre and zoom the viewer on tile (row, col) and select its class on the layer."""
        tiles = self.scoring.tiles_layer
        if tiles is None:
            return
        raster = layer_raster(tiles)
        centre = np.asarray(tiles.data_to_world(raster.centre(row, col)))[-2:]
        tile_world = float(np.min(np.abs(np.asarray(tiles.scale)[-2:]))) * raster.k
        canvas = float(np.min(getattr(self.viewer.canvas, "size", (600, 600))))
        camera = viewer_camera(self.viewer)
        camera.center = tuple(centre)
        camera.zoom = canvas / (TILES_IN_VIEW * tile_world)
        self.viewer.layers.selection.active = tiles
        value = raster.value(tiles.data, row, col)
        if value:
            tiles.selected_label = value

    def set_tile_class(self, row: int, col: int, value: int) -> None:
        """Set a tile's class through the layer (undo works; the panel rescores)."""
        tiles = self.scoring.tiles_layer
        if tiles is None:
            return
        raster = layer_raster(tiles)
        if raster.value(tiles.data, row, col) == value:  # confirmed as it was
            self.review_log.record(row, col, value, value, reviewer=self._reviewer())
            self._update_summary()
            return
        tiles.data_setitem(raster.block(row, col), value)

    def _reviewer(self) -> str:
        return self.reviewer_edit.text().strip()

    def record_edits(self) -> None:
        """Record every tile whose class differs from what the layer showed before."""
        tiles = self.scoring.tiles_layer
        if tiles is None or self._shown_labels is None:
            return
        data = tile_labels(tiles)
        if data.shape != self._shown_labels.shape:
            return
        rows, cols = np.nonzero(data != self._shown_labels)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            old, new = int(self._shown_labels[r, c]), int(data[r, c])
            if old and new:  # 0 is "not scored": nothing to learn from
                self.review_log.record(r, c, old, new, reviewer=self._reviewer())
        self._shown_labels = np.array(data, copy=True)
        self._update_summary()

    def _update_summary(self) -> None:
        rl = self.review_log
        self.message.emit(f"Reviewed {rl.n_reviewed} tiles, changed {rl.n_changed}")

    # ------------------------------------------------------------------ saved reviews
    def save_review(self, path: str | Path | None = None) -> Path | None:
        """Write the corrections as ``<stem>.review.geojson`` (asks where when no path)."""
        from ..export.review import review_path, save_review

        report = self.scoring.report
        if report is None:
            self.failed.emit("nothing to save: score a slide first")
            return None
        if path is None:
            default = str(review_path(report.slide.path))
            path, _ = QFileDialog.getSaveFileName(self, "Save review", default,
                                                  "Review GeoJSON (*.review.geojson)")
            if not path:
                return None
        try:
            written = save_review(path, self.review_log, report.results, name=report.stem)
        except Her2Error as err:
            self.failed.emit(str(err))
            return None
        self.message.emit(f"Saved review of {self.review_log.n_reviewed} tiles: {written.name}")
        return written

    def _offer_saved_review(self, report: SlideReport) -> None:
        from ..export.review import review_path

        path = review_path(report.slide.path)
        if not path.is_file():
            return
        answer = QMessageBox.question(
            self, "Saved review", f"Load the saved review of this slide?\n{path.name}",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        if answer == QMessageBox.StandardButton.Yes:
            self.load_review(path)

    def load_review(self, path: str | Path) -> int:
        """Apply a saved review to the tile layer; returns the number of tiles it holds."""
        from ..export.review import read_review, review_log_from

        layer = self.scoring.tiles_layer
        if layer is None:
            self.failed.emit("no tile layer to load the review into: score a slide first")
            return 0
        try:
            tiles = read_review(path)
        except Her2Error as err:
            self.failed.emit(str(err))
            return 0
        saved = review_log_from(tiles, reviewer=self._reviewer())
        raster = layer_raster(layer)
        data = np.array(layer.data, copy=True)
        rows, cols = raster.grid_shape
        inside = [c for c in saved if c.row < rows and c.col < cols]
        for c in inside:
            raster.paint(data, [c.row], [c.col], LABEL_VALUES[c.new])
            self.review_log.record(c.row, c.col, c.original, c.new, reviewer=c.reviewer,
                                   time=c.time)
        layer.data = data
        self._shown_labels = np.array(raster.per_tile(data), copy=True)
        self.scoring.apply_tile_edits()
        self.review_list.set_queue(self.review_list.queue, self.review_log)
        self.message.emit(f"Loaded review of {len(inside)} tiles from {Path(path).name}")
        return len(inside)

    # ------------------------------------------------------------------ report
    def save_report(self, path: str | Path | None = None) -> tuple[Path, Path] | None:
        """Write the one-page report (PNG and PDF) with the call as corrected so far."""
        from ..export.report_page import PageOptions, write_report_page

        report, tiles = self.scoring.report, self.scoring.tiles_layer
        if report is None or tiles is None:
            self.failed.emit("nothing to report: score a slide first")
            return None
        if path is None:
            default = str(Path(report.slide.path).parent / f"{report.stem}.report.png")
            path, _ = QFileDialog.getSaveFileName(self, "Save report", default,
                                                  "PNG and PDF report (*.png)")
            if not path:
                return None
        edited = self.scoring.call if self.review_log.n_changed else None
        options = PageOptions(n_reviewed=self.review_log.n_reviewed,
                              n_changed=self.review_log.n_changed,
                              label_image=tile_labels(tiles), call=edited)
        try:
            written = write_report_page(report, path, options)
        except Her2Error as err:
            self.failed.emit(str(err))
            return None
        self.message.emit(f"Saved report: {written[0].name} and {written[1].name}")
        return written
