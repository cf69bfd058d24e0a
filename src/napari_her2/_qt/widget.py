"""The **HER2 scoring** dock widget.

It only collects parameters, starts ``pipeline.iter_score_slide`` in a napari worker thread,
and turns what the worker yields into layer updates and the slide-score panel. At most one
worker runs per widget; Cancel, removing the image layer or closing the widget stops it
within one batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QFileDialog,
    QVBoxLayout,
    QWidget,
)

from ..errors import Her2Error, ScoringCancelled
from ..run.pipeline import Prepared, SlideReport, make_call
from ..scoring import call_from_rule, score_labels
from .controls import ScoringControls
from .explain import gradcam_job, show_attention, show_gradcam
from .layers import META_KEY, layer_raster, tile_labels, tile_layer_kwargs, tile_layer_name
from .regions import RegionControls, TmaControls
from .review import ReviewControls
from .updates import (
    batch_of,
    notification_text,
    paint_tiles,
    results_upto,
    until_cancelled,
)

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

PANEL_INTERVAL_S = 0.5


class Her2ScoringWidget(ReviewControls, ScoringControls, RegionControls, TmaControls, QWidget):
    """Dock widget: choose a slide layer and a model, press Score, watch tiles fill in."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker = None
        self.report: SlideReport | None = None
        self.prepared: Prepared | None = None
        self.tiles_layer = None
        self._cancel: threading.Event | None = None
        self._job_done = threading.Event()
        self._last_panel = 0.0
        self._running_layer_name = ""
        self._build()
        self._build_regions()
        self._build_tma()
        self._add_review_section()
        self._connect()
        self.refresh_layers()
        self.refresh_models()
        self.refresh_slide_models()

    def _add_review_section(self) -> None:
        """The review queue and the save buttons, above the form's closing stretch."""
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)  # made by ScoringControls._build
        layout.takeAt(layout.count() - 1)  # the stretch
        self._build_review(layout)
        layout.addStretch(1)

    def _connect(self) -> None:
        self.score_button.clicked.connect(self.start_scoring)
        self.cancel_button.clicked.connect(self.cancel)
        self.load_button.clicked.connect(self._choose_checkpoint)
        self.export_button.clicked.connect(self.export_clicked)
        self.gradcam_button.clicked.connect(lambda: self.explain_tile())
        self.layer_combo.changed.connect(self._on_layer_changed)
        self.viewer.layers.events.inserted.connect(self.refresh_layers)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.destroyed.connect(self._stop_worker)

    # ------------------------------------------------------------------ running
    def start_scoring(self) -> None:
        """Start scoring the selected layer in a worker thread (Score button)."""
        layer = self.image_layer()
        try:
            source, mpp = self._slide_source(layer)
            params = self.params()
            region = self.chosen_region(layer)
        except Her2Error as err:
            self._fail(str(err))
            return
        if self.tma_mode():
            self.start_tma(layer, source, mpp, params)
            return
        self._stop_worker()
        self.report, self.prepared, self.tma_report = None, None, None
        self.reset_review()
        self.panel.clear()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._running_layer_name = layer.name
        self.tiles_layer = self._tiles_layer_for(layer)
        model = params.model.name
        self.run_job(_scoring_job, source, model, mpp, params, region,
                     on_yielded=self._on_yielded, on_returned=self._on_returned,
                     status=f"Scoring {layer.name} with {model}…")

    def run_job(self, job: Callable[..., Any], *args: Any, on_yielded: Callable[[Any], None],
                on_returned: Callable[[Any], None], status: str) -> None:
        """Start ``job(*args, cancel, done)`` (a generator) in a napari worker thread, with
        fresh cancel / done events; errors reach ``_on_errored``, the end ``_on_finished``."""
        from napari.qt.threading import create_worker

        self._cancel, self._job_done = threading.Event(), threading.Event()
        self.worker = create_worker(job, *args, self._cancel, self._job_done,
                                    _start_thread=False, _ignore_errors=True)
        self.worker.yielded.connect(on_yielded)
        self.worker.returned.connect(on_returned)
        self.worker.errored.connect(self._on_errored)
        self.worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.status.setText(status)
        self.worker.start()

    def _slide_source(self, layer) -> tuple[Any, float | None]:
        """The open Slide the layer was made from (else its path) and the user's µm/px."""
        if layer is None:
            raise Her2Error("choose an image layer to score")
        info = layer.metadata.get(META_KEY, {})
        if not info.get("path"):
            raise Her2Error(f"layer {layer.name!r} was not opened from a slide file by napari-her2")
        user_mpp = self.mpp_spin.value or None
        if user_mpp is None and not info.get("mpp"):
            raise Her2Error(f"{Path(info['path']).name}: the file gives no microns per pixel; "
                            "enter 'Slide µm/px'")
        if user_mpp is not None:
            layer.scale = (user_mpp, user_mpp)
            layer.units = ("um", "um")
            info["mpp"], info["mpp_source"] = [user_mpp, user_mpp], "user"
            self.viewer.reset_view()
        return info.get("slide") or info["path"], user_mpp

    def cancel(self) -> None:
        """Stop the running worker within one batch (Cancel button)."""
        # the generator sees the event at its next batch, raises ScoringCancelled and shuts
        # its reader threads down (quitting the worker would skip that clean-up)
        if self._cancel is not None:
            self._cancel.set()
        self.status.setText("Cancelling…")

    def _stop_worker(self, *args: Any) -> None:
        worker = self.worker
        if worker is None:
            return
        if self._cancel is not None:
            self._cancel.set()
        # the job stops at its next batch and shuts its reader threads down; it needs nothing
        # from this (UI) thread to get there
        if not self._job_done.wait(timeout=30):
            log.warning("scoring did not stop within 30 s")
        self.worker = None

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._stop_worker()
        super().closeEvent(event)

    def _on_layer_removed(self, event: Any) -> None:
        removed = getattr(event, "value", None)
        if removed is not None and self.worker is not None:
            layer_name = self._running_layer_name
            if removed.name in (layer_name, tile_layer_name(layer_name)):
                self.cancel()
        if removed is self.tiles_layer:
            self.tiles_layer = None
        self.refresh_layers()

    def _set_running(self, running: bool) -> None:
        self.score_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.export_button.setEnabled(
            not running and (self.report is not None or self.tma_report is not None))
        self.save_review_button.setEnabled(not running and self.report is not None)
        self.save_report_button.setEnabled(not running and self.report is not None)
        self.gradcam_button.setEnabled(
            not running and self.report is not None and hasattr(self.report.predictor, "model")
        )

    # ------------------------------------------------------------------ results
    def _on_yielded(self, item: Any) -> None:
        if isinstance(item, Prepared):
            self._on_prepared(item)
            return
        if self.tiles_layer is None or self.prepared is None:
            return
        paint_tiles(self.tiles_layer, batch_of(item))
        self.progress.setValue(item.done)
        if time.monotonic() - self._last_panel > PANEL_INTERVAL_S or item.done == item.total:
            self._last_panel = time.monotonic()
            self._show_results_score(results_upto(item.results, item.stop),
                                     partial=item.done < item.total)

    def _tiles_layer_for(self, image) -> Any:
        """The tile layer of ``image``: reused if there, else created (a 1 x 1 placeholder).

        Created when Score is pressed, not when the first results arrive: creating a napari
        layer is the slowest thing the UI thread does, and it must not happen mid-run.
        """
        name = tile_layer_name(image.name)
        if name in self.viewer.layers:
            return self.viewer.layers[name]
        data, kwargs = tile_layer_kwargs(image.name, (1, 1), (1.0, 1.0), tuple(image.scale[-2:]),
                                         tuple(image.translate[-2:]))
        kwargs["units"] = tuple(image.units[-2:])
        tiles = self.viewer.add_labels(data, **kwargs)
        tiles.events.paint.connect(self._on_tiles_edited)
        return tiles

    def _on_prepared(self, prep: Prepared) -> None:
        """Place the tile layer on the grid (all zeros: nothing scored yet)."""
        if self.tiles_layer is None or self._running_layer_name not in self.viewer.layers:
            self.cancel()  # the slide or its tile layer was closed before the grid was ready
            return
        self.prepared = prep
        image = self.viewer.layers[self._running_layer_name]
        data, kwargs = tile_layer_kwargs(
            image.name, prep.grid.shape, prep.grid.tile_size0, tuple(image.scale[-2:]),
            tuple(image.translate[-2:]), image_shape0=tuple(prep.slide.dimensions),
            extra_meta={"slide": str(prep.slide.path), "model": prep.predictor.name,
                        "organ": prep.params.call.organ.value,
                        "specimen": prep.params.call.specimen.value},
        )
        tiles = self.tiles_layer
        tiles.metadata = kwargs["metadata"]
        tiles.scale, tiles.translate = kwargs["scale"], kwargs["translate"]
        tiles.data = data
        self.progress.setRange(0, max(prep.grid.n_tissue, 1))
        self.progress.setValue(0)
        self.status.setText(f"{prep.grid.n_tissue} tissue tiles of {prep.grid.shape[0]} x "
                            f"{prep.grid.shape[1]} at {prep.grid.target_mpp:g} µm/px")
        if prep.stain is not None and prep.stain.warning:
            from napari.utils.notifications import show_warning

            show_warning(f"{prep.slide.name}: {prep.stain.warning}")

    def _context(self) -> dict[str, Any]:
        prep = self.prepared
        if prep is None:
            return {}
        ctx = {"model": prep.predictor.name, "tile": f"{prep.grid.tile_size}px",
               "µm/px": f"{prep.grid.target_mpp:g}", "organ": prep.params.call.organ.value}
        if prep.params.call.slide_model:
            ctx["slide call"] = Path(prep.params.call.slide_model).name
        if prep.region is not None:
            mpp = prep.slide.require_mpp()
            ctx["region"] = f"{prep.region.source}: {prep.region.describe((mpp.x, mpp.y))}"
        return ctx

    def _show_results_score(self, results, partial: bool) -> None:
        """The guideline rule's call of the tiles scored so far (a slide model, when one is
        chosen, makes the final call once every tile is scored)."""
        prep = self.prepared
        if prep is None:  # a new run started meanwhile
            return
        call = make_call(results, prep.params, prep.grid, prep.stain, partial=partial)
        self.panel.show_call(call, self._context())

    def _on_tiles_edited(self, event: Any = None) -> None:
        """A pathologist corrected tiles by hand. napari announces a paint before it writes
        the new values, so the rescoring runs once the event loop is back."""
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, self._apply_tile_edits)

    def _apply_tile_edits(self) -> None:
        """Record the corrected tiles and rescore from the edited labels."""
        if self.tiles_layer is None or self.prepared is None:
            return
        self._record_edits()
        c = self.prepared.params.call
        call = call_from_rule(score_labels(tile_labels(self.tiles_layer),
                                           organ=c.organ.value, specimen=c.specimen.value))
        self.panel.show_call(call, {**self._context(), "edited": "by hand"})

    def _on_returned(self, report: SlideReport | None) -> None:
        if report is None:  # cancelled
            self._show_cancelled()
            return
        self.report = report
        self.panel.show_call(report.call, self._context())
        self.start_review()
        if report.call.evidence.attention is not None:
            show_attention(self.viewer, self.viewer.layers[self._running_layer_name], report)
        t = report.timings
        text = f"Done: {len(report.results)} tiles in {t.total:.1f} s"
        if report.stain is not None and report.stain.warning:
            text += f"\nWarning: {report.stain.warning}"
        self.status.setText(text)

    def _show_cancelled(self) -> None:
        """A cancelled run leaves no call on the panel that could be read as the result."""
        self.panel.clear()
        self.progress.setValue(0)
        self.status.setText("Cancelled: no call (the tiles scored so far stay on the layer)")

    def _on_errored(self, err: BaseException) -> None:
        if isinstance(err, ScoringCancelled):
            self._show_cancelled()
            return
        if isinstance(err, Her2Error):
            self._fail(str(err))
            return
        self._fail(f"scoring failed: {type(err).__name__}: {err}")
        log.error("scoring failed", exc_info=err)

    def _on_finished(self) -> None:
        if self._cancel is not None and self._cancel.is_set() and self.report is None:
            self._show_cancelled()
        self.worker = None
        self._set_running(False)

    def _fail(self, message: str) -> None:
        """Say what went wrong: the reason first, one short line (the full text in the log)."""
        from napari.utils.notifications import show_error

        short = notification_text(message)
        log.warning("%s", message)
        self.status.setText(message)
        show_error(short)

    # ------------------------------------------------------------------ export
    def export_geojson(self, path: str | Path | None = None) -> Path | None:
        """Write the tile overlay as QuPath GeoJSON (asks for a path when none is given)."""
        from ..export import write_geojson
        from ..export.review import corrected_tiles_geojson

        if self.report is None or self.tiles_layer is None:
            self._fail("nothing to export: score a slide first")
            return None
        if path is None:
            slide_path = self.report.slide.path
            default = str(slide_path.parent / f"{self.report.stem}.geojson")
            path, _ = QFileDialog.getSaveFileName(self, "Export GeoJSON", default,
                                                  "GeoJSON (*.geojson *.json)")
            if not path:
                return None
        fc = corrected_tiles_geojson(self.report.results, tile_labels(self.tiles_layer),
                                     name=self.report.stem)
        try:
            written = write_geojson(Path(path), fc)
        except Her2Error as err:
            self._fail(str(err))
            return None
        self.status.setText(f"Wrote {written}")
        return written

    # ------------------------------------------------------------------ Grad-CAM
    def tile_under_cursor(self) -> tuple[int, int] | None:
        """(row, col) of the tile under the mouse, or None outside the grid."""
        if self.tiles_layer is None:
            return None
        pos = self.tiles_layer.world_to_data(self.viewer.cursor.position)
        return layer_raster(self.tiles_layer).tile_at(*pos[-2:])

    def explain_tile(self, row: int | None = None, col: int | None = None):
        """Grad-CAM of a scored tile (default: under the cursor) as an Image layer on it."""
        from napari.qt.threading import create_worker

        report = self.report
        if report is None or not hasattr(report.predictor, "model"):
            self._fail("Grad-CAM needs a slide scored with a CNN checkpoint")
            return None
        where = (row, col) if row is not None and col is not None else self.tile_under_cursor()
        if where is None:
            self._fail("move the mouse over a tile of the tile layer first")
            return None
        worker = create_worker(gradcam_job, report, *where, _start_thread=False)
        worker.returned.connect(lambda result: self._show_gradcam(*where, result))
        worker.errored.connect(self._on_errored)
        worker.start()
        return worker

    def _show_gradcam(self, row: int, col: int, heat: np.ndarray) -> None:
        report = self.report
        if report is None:  # a new run started meanwhile
            return
        image = self.viewer.layers[self._running_layer_name]
        show_gradcam(self.viewer, image, report, row, col, heat)
        self.status.setText(f"Grad-CAM of tile ({row}, {col})")


def _scoring_job(path, model, mpp, params, region, cancel, done: threading.Event):
    """The worker's generator: scoring steps, ending with the report (None if cancelled)."""
    from ..run.pipeline import iter_score_slide

    return (yield from until_cancelled(iter_score_slide(
        path, model, mpp=mpp, params=params, cancel=cancel, region=region), done))

