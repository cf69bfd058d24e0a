"""The widget's **Region** chooser (score inside a napari Shapes layer only) and its
**TMA** mode (find the cores, score each, show them as a labelled Shapes layer).

A mixin of :class:`~napari_her2._qt.widget.Her2ScoringWidget` (it uses the widget's
``viewer`` and ``form``). Shapes are turned into a :class:`~napari_her2.tiles.regions.Region` in
the slide's level-0 pixels through the layers' own transforms; a shape whose feature
``class`` / ``name``, or text, is ``Ignore*`` / ``Exclude*`` is subtracted, and so is every
shape of another Shapes layer whose name starts with Ignore or Exclude.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox

from ..errors import Her2Error
from ..tiles.regions import Region, is_exclusion, merge_regions, region_from_shapes
from .updates import until_cancelled

WHOLE_SLIDE = ("Whole slide", None)
#: feature columns that name a shape's class
LABEL_COLUMNS = ("class", "classification", "name")


def shape_labels(shapes) -> list[str | None]:
    """Each shape's class: its feature ``class`` / ``classification`` / ``name``, else its
    text, else None."""
    n = len(shapes.data)
    features = shapes.features
    for column in LABEL_COLUMNS:
        if column in getattr(features, "columns", ()):
            return [None if v is None else str(v) for v in features[column].tolist()]
    values = np.asarray(getattr(shapes.text, "values", ()))
    if values.ndim == 1 and len(values) == n:  # no text: napari gives a 0-d ''
        return [str(v) if str(v) else None for v in values]
    return [None] * n


def shapes_to_level0(shapes, image) -> list[np.ndarray]:
    """Every shape's vertices as (y, x) level-0 pixels of ``image`` (through the world)."""
    out = []
    for verts in shapes.data:
        pts = [np.asarray(image.world_to_data(shapes.data_to_world(v)))[-2:] for v in verts]
        out.append(np.asarray(pts, np.float64))
    return out


def region_from_layer(shapes, image, exclusions: tuple = ()) -> Region:
    """The region a Shapes layer draws over ``image``, minus ``exclusions`` (Shapes layers
    whose every shape is subtracted)."""
    parts = [region_from_shapes(shapes_to_level0(shapes, image), list(shapes.shape_type),
                                shape_labels(shapes), source=shapes.name)]
    for layer in exclusions:
        if len(layer.data):
            verts = shapes_to_level0(layer, image)
            polys = region_from_shapes(verts, list(layer.shape_type), [None] * len(verts),
                                       source=layer.name)
            parts.append(Region((), polys.include, layer.name))
    return merge_regions(parts, source=shapes.name)


class RegionControls:
    """The Region chooser of the scoring widget."""

    # provided by the widget this mixes into
    viewer: Any
    form: Any

    def _build_regions(self) -> None:
        self.region_combo = ComboBox(name="region", label="Region", choices=[WHOLE_SLIDE])
        self.region_combo.tooltip = ("Score only inside the shapes of a Shapes layer "
                                     "(Ignore/Exclude shapes are left out)")
        self.form.insert(1, self.region_combo)
        self.viewer.layers.events.inserted.connect(self.refresh_regions)
        self.viewer.layers.events.removed.connect(self.refresh_regions)
        self.refresh_regions()

    def _shapes_layers(self) -> list[Any]:
        from napari.layers import Shapes

        return [ly for ly in self.viewer.layers if isinstance(ly, Shapes)]

    def refresh_regions(self, event: Any = None) -> None:
        """List the viewer's Shapes layers (not the exclusion layers, not the TMA cores)."""
        current = self.region_combo.value
        names = [ly.name for ly in self._shapes_layers() if not is_exclusion(ly.name)]
        choices = [WHOLE_SLIDE] + [(n, n) for n in names]
        self.region_combo.choices = choices
        if current in names:
            self.region_combo.value = current

    def chosen_region(self, image) -> Region | None:
        """The chosen layer's region over ``image`` (None: the whole slide)."""
        name = self.region_combo.value
        if not name or name not in self.viewer.layers:
            return None
        exclusions = tuple(ly for ly in self._shapes_layers() if is_exclusion(ly.name))
        return region_from_layer(self.viewer.layers[name], image, exclusions)


# ---------------------------------------------------------------------- TMA mode
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


class TmaControls:
    """The TMA mode of the scoring widget: dearray, then score core by core."""

    # provided by the widget this mixes into
    viewer: Any
    form: Any
    panel: Any
    progress: Any
    status: Any
    worker: Any
    report: Any
    prepared: Any
    _cancel: threading.Event | None
    _job_done: threading.Event
    _running_layer_name: str
    _fail: Callable[[str], None]
    _stop_worker: Callable[..., None]
    _set_running: Callable[[bool], None]
    run_job: Callable[..., None]
    _show_cancelled: Callable[[], None]
    _on_errored: Callable[[BaseException], None]
    _on_finished: Callable[[], None]
    export_button: Any
    export_geojson: Callable[..., Any]

    def _build_tma(self) -> None:
        from magicgui.widgets import CheckBox, LineEdit

        self.tma_check = CheckBox(name="tma", value=False, text="TMA: score core by core")
        self.tma_grid = LineEdit(name="tma_grid", label="TMA grid", value="")
        self.tma_grid.tooltip = "ROWSxCOLS of the array, e.g. 6x8 (empty: from the cores found)"
        self.form.insert(2, self.tma_check)
        self.form.insert(3, self.tma_grid)
        self.tma_report = None
        self.cores_layer = None

    def tma_mode(self) -> bool:
        return bool(self.tma_check.value)

    def start_tma(self, layer, source, mpp, params) -> None:
        """Dearray the slide and score each core in a worker thread."""
        from ..tma import parse_grid

        try:
            shape = parse_grid(self.tma_grid.value) if self.tma_grid.value.strip() else None
        except Her2Error as err:
            self._fail(str(err))
            return
        self._stop_worker()
        self.report, self.prepared, self.tma_report = None, None, None
        self.panel.clear()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._running_layer_name = layer.name
        self.run_job(_tma_job, source, params.model.name, mpp, params, shape,
                     on_yielded=self._on_tma_yielded, on_returned=self._on_tma_returned,
                     status=f"Finding the cores of {layer.name}…")

    def _on_tma_yielded(self, item: Any) -> None:
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
        self.progress.setValue(self.progress.value() + 1)

    def _show_cores(self, tma) -> None:
        """The cores as a Shapes layer over the slide, labelled with their ids."""
        image = self.viewer.layers[self._running_layer_name]
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
            text={"string": "{core}: {score}", "color": "white", "size": 10})
        self.progress.setRange(0, max(1, len(tma.cores)))
        self.status.setText(f"{len(tma.present)} cores on a {tma.shape[0]} x {tma.shape[1]} "
                            f"grid (rotated {tma.angle_deg:.1f}°); scoring each core…")

    def _on_tma_returned(self, report) -> None:
        if report is None:  # cancelled
            self._show_cancelled()
            return
        self.tma_report = report
        self.export_button.setEnabled(True)
        scored = [s for s in report.scores if s.call.score]
        self.status.setText(f"Done: {len(scored)} of {len(report.tma.present)} cores scored "
                            f"({len(report.tma.cores) - len(report.tma.present)} missing)")

    def export_clicked(self) -> None:
        """Export what was scored last: the cores after a TMA run, else the tile overlay."""
        if self.tma_report is not None:
            self.export_tma()
        else:
            self.export_geojson()

    def export_tma(self, folder: str | Path | None = None) -> dict[str, Path] | None:
        """Write ``<stem>_cores.csv`` and ``<stem>_cores.geojson`` (QuPath) of the last TMA
        run into ``folder`` (asks for one, starting in the slide's folder, when none is given)."""
        from qtpy.QtWidgets import QFileDialog

        from ..export.tma import write_tma_outputs

        report = self.tma_report
        if report is None:
            self._fail("nothing to export: score the TMA cores first")
            return None
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Export TMA cores to",
                                                      str(report.slide_path.parent))
            if not folder:
                return None
        try:
            written = write_tma_outputs(report, folder)
        except Her2Error as err:
            self._fail(str(err))
            return None
        self.status.setText(f"Wrote {written['csv'].name} and {written['geojson'].name} to "
                            f"{Path(folder)}")
        return written


def _tma_job(source, model, mpp, params, shape, cancel, done: threading.Event):
    """The worker's generator: the TMA grid, a CoreScore per core, then the TmaReport
    (None if cancelled)."""
    from ..tma import iter_score_tma

    return (yield from until_cancelled(iter_score_tma(
        source, model, mpp=mpp, params=params, shape=shape, cancel=cancel), done))
