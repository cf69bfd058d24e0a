"""The scoring of one slide layer, shared by the widget's panels.

:class:`SlideScoring` starts ``pipeline.iter_score_slide`` through the :class:`JobRunner`,
paints each batch into the tile layer, turns the tiles scored so far into a partial call and
keeps the finished report. It holds no widgets: the panels follow it through its signals and
read ``report``, ``tiles_layer``, ``image_name`` and ``call`` from it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, QTimer, Signal

from ..run.pipeline import Prepared, SlideReport, make_call
from ..scoring import SlideCall, call_from_rule, score_cells, score_labels
from ..scoring.cells import edited_cells
from ..tiles.cells import outlined_text
from ..tiles.grid import scoring_notes
from .jobs import JobRunner
from .layers import tile_labels, tile_layer_kwargs, tile_layer_name
from .updates import batch_of, paint_tiles, results_upto, until_cancelled

if TYPE_CHECKING:
    import napari

    from ..tiles.regions import Region

#: least time between two partial calls on the panel, in seconds
PANEL_INTERVAL_S = 0.5


class SlideScoring(QObject):
    """A slide's scoring run, its tile layer, its report and the call the panel shows."""

    #: a line for the status bar
    message = Signal(str)
    #: the progress bar restarts at 0 of this many steps
    progress_range = Signal(int)
    #: steps done so far
    progress = Signal(int)
    #: the call to show (SlideCall) and its context (dict)
    call_shown = Signal(object, object)
    #: no call to show
    call_cleared = Signal()
    #: a new run (whole slide or TMA) began: earlier results are gone
    run_begun = Signal()
    #: the finished SlideReport
    report_ready = Signal(object)
    #: the tile layer was edited by hand; the rescored call follows
    tiles_edited = Signal()
    #: the cells after a hand edit (CellTable): those the rescored call counted
    cells_edited = Signal(object)

    def __init__(self, viewer: napari.Viewer, jobs: JobRunner,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.jobs = jobs
        self.report: SlideReport | None = None
        self.prepared: Prepared | None = None
        self.tiles_layer: Any = None
        self.image_name = ""
        self.call: SlideCall | None = None
        self._last_panel = 0.0
        viewer.layers.events.removed.connect(self._on_layer_removed)
        jobs.cancelled.connect(self.show_cancelled)

    # ------------------------------------------------------------------ runs
    def begin(self, image_name: str) -> None:
        """Stop the running job and drop its results before a new run on ``image_name``."""
        self.jobs.stop()
        self.report, self.prepared = None, None
        self.image_name = image_name
        self.clear_call()
        self.progress_range.emit(1)
        self.run_begun.emit()

    def start(self, layer: Any, source: Any, mpp: float | None, params: Any,
              region: Region | None) -> None:
        """Score ``layer`` (opened from ``source``) in a worker thread."""
        self.begin(layer.name)
        self.tiles_layer = self._tiles_layer_for(layer)
        model = params.model.name
        self.jobs.run(_scoring_job, source, model, mpp, params, region,
                      status=f"Scoring {layer.name} with {model}…",
                      on_yielded=self._on_yielded, on_returned=self._on_returned)

    def show_cancelled(self) -> None:
        """A cancelled run leaves no call on the panel that could be read as the result."""
        self.clear_call()
        self.progress.emit(0)
        self.message.emit("Cancelled: no call (the tiles scored so far stay on the layer)")

    def _on_layer_removed(self, event: Any) -> None:
        removed = getattr(event, "value", None)
        if removed is not None and self.jobs.running:
            if removed.name in (self.image_name, tile_layer_name(self.image_name)):
                self.jobs.cancel()
        if removed is self.tiles_layer:
            self.tiles_layer = None

    # ------------------------------------------------------------------ the panel's call
    def show_call(self, call: SlideCall, context: dict[str, Any]) -> None:
        self.call = call
        self.call_shown.emit(call, context)

    def clear_call(self) -> None:
        self.call = None
        self.call_cleared.emit()

    def context(self) -> dict[str, Any]:
        """What the panel shows beside the call: model, tile, µm/px, organ, region."""
        prep = self.prepared
        if prep is None:
            return {}
        ctx = {"model": prep.predictor.name, "tile": f"{prep.grid.tile_size}px",
               "µm/px": f"{prep.grid.target_mpp:g}", "organ": prep.params.call.organ.value}
        if prep.params.call.slide_model:
            ctx["slide call"] = Path(prep.params.call.slide_model).name
        encoder = None if prep.slide_model is None else prep.slide_model.card.encoder
        if encoder:
            ctx["encoder"] = encoder["name"]
        if prep.region is not None:
            mpp = prep.slide.require_mpp()
            ctx["region"] = f"{prep.region.source}: {prep.region.describe((mpp.x, mpp.y))}"
        return ctx

    # ------------------------------------------------------------------ results
    def _tiles_layer_for(self, image: Any) -> Any:
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

    def _on_yielded(self, item: Any) -> None:
        if isinstance(item, Prepared):
            self._on_prepared(item)
            return
        if self.tiles_layer is None or self.prepared is None:
            return
        paint_tiles(self.tiles_layer, batch_of(item))
        self.progress.emit(item.done)
        if time.monotonic() - self._last_panel > PANEL_INTERVAL_S or item.done == item.total:
            self._last_panel = time.monotonic()
            self._show_partial_call(results_upto(item.results, item.stop),
                                    partial=item.done < item.total)

    def _on_prepared(self, prep: Prepared) -> None:
        """Place the tile layer on the grid (all zeros: nothing scored yet)."""
        if self.tiles_layer is None or self.image_name not in self.viewer.layers:
            self.jobs.cancel()  # the slide or its tile layer was closed before the grid was ready
            return
        self.prepared = prep
        image = self.viewer.layers[self.image_name]
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
        self.progress_range.emit(prep.grid.n_tissue)
        self.message.emit(f"{prep.grid.n_tissue} tissue tiles of {prep.grid.shape[0]} x "
                          f"{prep.grid.shape[1]} at {prep.grid.target_mpp:g} µm/px")
        from napari.utils.notifications import show_warning

        if prep.stain is not None and prep.stain.warning:
            show_warning(f"{prep.slide.name}: {prep.stain.warning}")
        for note in scoring_notes(prep.predictor, prep.slide.mpp_source):
            show_warning(f"{prep.slide.name}: {note}")

    def _show_partial_call(self, results: Any, partial: bool) -> None:
        """The guideline rule's call of the tiles scored so far (a slide model, when one is
        chosen, makes the final call once every tile is scored)."""
        prep = self.prepared
        if prep is None:  # a new run started meanwhile
            return
        call = make_call(results, prep.params, prep.grid, prep.stain, partial=partial,
                         predictor=prep.predictor)
        self.show_call(call, self.context())

    def _on_returned(self, report: SlideReport) -> None:
        self.report = report
        context = self.context()
        cells = report.results.cells
        if cells is not None:  # the cells the call counted (known once every tile is done)
            summary = cells.summary()
            context["cells"] = (f"{summary['n_tumour_cells']:,} tumour of "
                                f"{summary['n_cells']:,} found")
            outlined = outlined_text(summary)
            if outlined:
                context["cells"] += f"; {outlined}"
        self.show_call(report.call, context)
        self.report_ready.emit(report)
        text = f"Done: {len(report.results)} tiles in {report.timings.total:.1f} s"
        if report.stain is not None and report.stain.warning:
            text += f"\nWarning: {report.stain.warning}"
        for note in scoring_notes(report.predictor, report.slide.mpp_source):
            text += f"\nNote: {note}"
        self.message.emit(text)

    # ------------------------------------------------------------------ hand edits
    def _on_tiles_edited(self, event: Any = None) -> None:
        """A pathologist corrected tiles by hand. napari announces a paint before it writes
        the new values, so the rescoring runs once the event loop is back."""
        QTimer.singleShot(0, self.apply_tile_edits)

    def apply_tile_edits(self) -> None:
        """Announce the edit (the review records it), then rescore from the edited labels."""
        if self.tiles_layer is None or self.prepared is None:
            return
        self.tiles_edited.emit()
        c = self.prepared.params.call
        labels = tile_labels(self.tiles_layer)
        # the cells of this run's tiles (a report of an earlier run, while a new one is
        # scoring, has another grid: its cells are not these tiles')
        report = self.report
        results = (report.results if report is not None and report.grid is self.prepared.grid
                   else None)
        if results is not None and results.cells is not None:  # the call counted cells
            cells, _ = edited_cells(results, labels)
            score = score_cells(replace(results, cells=cells), c.organ.value, c.specimen.value)
            self.cells_edited.emit(cells)
        else:
            score = score_labels(labels, organ=c.organ.value, specimen=c.specimen.value)
        call = call_from_rule(score)
        self.show_call(call, {**self.context(), "edited": "by hand"})


def _scoring_job(path, model, mpp, params, region, cancel, done: threading.Event):
    """The worker's generator: scoring steps, ending with the report (None if cancelled)."""
    from ..run.pipeline import iter_score_slide

    return (yield from until_cancelled(iter_score_slide(
        path, model, mpp=mpp, params=params, cancel=cancel, region=region), done))
