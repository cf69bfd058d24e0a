"""The widget's **TMA** mode: find the cores of a tissue microarray, score each core, and
show the cores as a Shapes layer labelled with their ids and scores."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, Container, LineEdit, Widget
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QVBoxLayout, QWidget

from ..errors import Her2Error
from .panel import ScoringPanel
from .updates import until_cancelled

if TYPE_CHECKING:
    import napari

    from .slide_scoring import SlideScoring

TMA_SUFFIX = " TMA cores"


def tma_layer_name(image_name: str) -> str:
    return f"{image_name}{TMA_SUFFIX}"


def core_ellipses(tma) -> list[np.ndarray]:
    """Each core's circle as a napari ellipse: its box's 4 corners, (y, x) level-0 px."""
    out = []
    for core in tma.cores:
        (cx, cy), r = core.centre, core.diameter / 2
        out.append(np.array([[cy - r, cx - r], [cy - r, cx + r], [cy + r, cx + r],
                             [cy + r, cx - r]]))
    return out


def core_text(score) -> str:
    """What a core's label shows after its id: its score, 'missing' or 'no call'."""
    if score.core.missing:
        return "missing"
    return f"HER2 {score.call.score}" if score.call.score else "no call"


class TmaPanel(ScoringPanel):
    """The TMA switch and grid; runs the dearray-then-score-each-core job and keeps its report."""

    #: the progress bar restarts at 0 of this many cores
    progress_range = Signal(int)
    #: cores scored so far
    progress = Signal(int)

    def __init__(self, viewer: napari.Viewer, scoring: SlideScoring,
                 parent: QWidget | None = None) -> None:
        super().__init__(viewer, scoring, parent)
        self.tma_check = CheckBox(name="tma", value=False, text="TMA: score core by core")
        self.tma_grid = LineEdit(name="tma_grid", label="TMA grid", value="")
        self.tma_grid.tooltip = "ROWSxCOLS of the array, e.g. 6x8 (empty: from the cores found)"
        rows: list[Widget] = [self.tma_check, self.tma_grid]
        self.fields = Container(widgets=rows)
        left, _, right, _ = self.fields.margins
        self.fields.margins = (left, 0, right, 0)  # rows of the form above
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.fields.native)
        self.report: Any = None
        self.cores_layer: Any = None
        self._image_name = ""
        self._scored = 0

    def enabled(self) -> bool:
        """Whether Score means: score the TMA core by core."""
        return bool(self.tma_check.value)

    def forget(self) -> None:
        """A new run began: the last TMA report is no longer what Export writes."""
        self.report = None

    def start(self, layer: Any, source: Any, mpp: float | None, params: Any) -> None:
        """Dearray the slide and score each core in a worker thread."""
        from ..tma import parse_grid

        try:
            shape = parse_grid(self.tma_grid.value) if self.tma_grid.value.strip() else None
        except Her2Error as err:
            self.failed.emit(str(err))
            return
        self.scoring.begin(layer.name)
        self._image_name = layer.name
        self._scored = 0
        self.scoring.jobs.run(_tma_job, source, params.model.name, mpp, params, shape,
                              status=f"Finding the cores of {layer.name}…",
                              on_yielded=self._on_yielded, on_returned=self._on_returned)

    def _on_yielded(self, item: Any) -> None:
        from ..tma import TmaGrid

        if isinstance(item, TmaGrid):
            self._show_cores(item)
            return
        layer = self.cores_layer
        if layer is None or layer not in self.viewer.layers:
            return
        i = next(k for k, cid in enumerate(layer.features["core"]) if cid == item.core.id)
        features = layer.features.copy()
        features.loc[i, "score"] = core_text(item)
        layer.features = features
        self._scored += 1
        self.progress.emit(self._scored)

    def _show_cores(self, tma) -> None:
        """The cores as a Shapes layer over the slide, labelled with their ids."""
        image = self.viewer.layers[self._image_name]
        name = tma_layer_name(image.name)
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        ids = [c.id for c in tma.cores]
        self.cores_layer = self.viewer.add_shapes(
            core_ellipses(tma), shape_type="ellipse", name=name,
            scale=tuple(image.scale[-2:]), translate=tuple(image.translate[-2:]),
            units=tuple(image.units[-2:]), face_color="transparent",
            edge_color=["#808080" if c.missing else "#00e0ff" for c in tma.cores],
            edge_width=max(2.0, float(np.median([c.diameter for c in tma.cores])) / 60),
            features={"core": ids, "score": ["missing" if c.missing else "…"
                                              for c in tma.cores]},
            text={"string": "{core}: {score}", "color": "black", "size": 12,
                  "anchor": "upper_left", "translation": (-4.0, 0.0)})
        self.progress_range.emit(len(tma.cores))
        self.message.emit(f"{len(tma.present)} cores on a {tma.shape[0]} x {tma.shape[1]} "
                          f"grid (rotated {tma.angle_deg:.1f}°); scoring each core…")

    def _on_returned(self, report) -> None:
        self.report = report
        scored = [s for s in report.scores if s.call.score]
        self.message.emit(f"Done: {len(scored)} of {len(report.tma.present)} cores scored "
                          f"({len(report.tma.cores) - len(report.tma.present)} missing)")

    def export(self, folder: str | Path | None = None) -> dict[str, Path] | None:
        """Write ``<stem>_cores.csv`` and ``<stem>_cores.geojson`` (QuPath) of the last TMA
        run into ``folder`` (asks for one, starting in the slide's folder, when none is given)."""
        from ..export.tma import write_tma_outputs

        report = self.report
        if report is None:
            self.failed.emit("nothing to export: score the TMA cores first")
            return None
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Export TMA cores to",
                                                      str(report.slide_path.parent))
            if not folder:
                return None
        try:
            written = write_tma_outputs(report, folder)
        except Her2Error as err:
            self.failed.emit(str(err))
            return None
        self.message.emit(f"Wrote {written['csv'].name} and {written['geojson'].name} to "
                          f"{Path(folder)}")
        return written


def _tma_job(source, model, mpp, params, shape, cancel, done: threading.Event):
    """The worker's generator: the TMA grid, a CoreScore per core, then the TmaReport
    (None if cancelled)."""
    from ..tma import iter_score_tma

    return (yield from until_cancelled(iter_score_tma(
        source, model, mpp=mpp, params=params, shape=shape, cancel=cancel), done))
