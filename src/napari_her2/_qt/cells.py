"""The cells a scorer found, as a napari Points layer ``<image> cells`` coloured by class.

A whole slide holds millions of cells, more than a Points layer can draw and stay fluid. The
layer therefore holds only the cells in view, and only once the view is zoomed in far enough
to tell cells apart (:data:`DRAW_BELOW_UM_PER_PX`, about ×5): panning or zooming refreshes it
after a short pause, never more than :data:`MAX_DRAWN` cells (an even subset beyond that).
A hidden layer is left as it is and filled when it is shown again.
Each point carries the cell's class, membrane OD (mean and 95th percentile), completeness,
cytoplasm OD, whether it is tumour and whether it was found only as an interior outlined by
DAB as layer features, so hovering shows them in napari's status bar.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QObject, QTimer

from ..classes import CLASS_COLORS
from ..tiles.cells import CLASS_NAMES, CellTable
from .layers import viewer_camera

CELLS_SUFFIX = " cells"
#: the layer is filled only when one screen pixel shows at most this many microns (about ×5)
DRAW_BELOW_UM_PER_PX = 2.0
#: the most cells the layer holds at once
MAX_DRAWN = 20_000
#: pause after the last pan or zoom before the layer is refilled
REFRESH_MS = 150
#: drawn diameter of a cell, in microns
CELL_DIAMETER_UM = 8.0
_COLOURS = {code: np.array([*CLASS_COLORS[name], 255], np.float32) / 255
            for code, name in CLASS_NAMES.items()}


def cells_layer_name(image_name: str) -> str:
    return f"{image_name}{CELLS_SUFFIX}"


class CellsOverlay(QObject):
    """Keeps the cells layer of one image in step with the view."""

    def __init__(self, viewer: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.cells: CellTable | None = None
        self.layer: Any = None
        self._scale = np.ones(2)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        camera = viewer_camera(viewer)
        camera.events.zoom.connect(self._schedule)
        camera.events.center.connect(self._schedule)

    def show(self, image: Any, cells: CellTable | None) -> None:
        """Show ``cells`` (level-0 pixels of ``image``) as ``<image> cells``; None or no cells
        removes the layer."""
        name = cells_layer_name(image.name)
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.layer = None
        self.cells = cells if cells is not None and len(cells) else None
        if self.cells is None:
            return
        self._scale = np.abs(np.asarray(image.scale[-2:], float))
        self.layer = self.viewer.add_points(
            np.zeros((0, 2)), name=name, scale=tuple(image.scale[-2:]),
            translate=tuple(image.translate[-2:]), units=tuple(image.units[-2:]),
            size=CELL_DIAMETER_UM / float(self._scale.mean()), border_width=0, opacity=0.9,
            features=_features(CellTable()))
        self.layer.events.visible.connect(self._schedule)
        self.refresh()

    def update(self, cells: CellTable) -> None:
        """The same cells with new classes (a hand edit): redrawn in the layer shown."""
        if self.layer is None or self.cells is None or len(cells) != len(self.cells):
            return
        self.cells = cells
        self.refresh()

    def _schedule(self, event: Any = None) -> None:
        if self.layer is not None:
            self._timer.start()

    def view_box0(self) -> tuple[float, float, float, float]:
        """(y0, x0, y1, x1) of the view in level-0 pixels of the image."""
        camera = viewer_camera(self.viewer)
        size = np.asarray(getattr(self.viewer.canvas, "size", (600, 600)), float)[-2:]
        centre = np.asarray(camera.center[-2:], float)
        half = size / max(float(camera.zoom), 1e-12) / 2
        translate = np.asarray(self.layer.translate[-2:], float)
        (y0, x0), (y1, x1) = ((centre - half - translate) / self._scale,
                              (centre + half - translate) / self._scale)
        return y0, x0, y1, x1

    def refresh(self) -> None:
        """Fill the layer with the cells in view (none when zoomed out)."""
        if self.layer is None or self.cells is None:
            return
        if self.layer not in self.viewer.layers:  # removed by the user
            self.layer, self.cells = None, None
            return
        if not self.layer.visible:  # hidden: napari does not reslice it, so filling it now
            return  # would leave stale view indices; it is filled when shown again
        # the image's world units are microns (its scale is the slide's µm/px)
        um_per_px = 1.0 / max(float(viewer_camera(self.viewer).zoom), 1e-12)
        index = np.zeros(0, np.int64)
        if um_per_px <= DRAW_BELOW_UM_PER_PX:
            index = self.cells.in_box(*self.view_box0())
            if len(index) > MAX_DRAWN:
                index = index[np.linspace(0, len(index) - 1, MAX_DRAWN).astype(np.int64)]
        shown = self.cells.take(index)
        self.layer.data = np.stack([shown.y0, shown.x0], axis=1).astype(np.float64)
        self.layer.features = _features(shown)
        if len(shown):
            self.layer.face_color = np.stack([_COLOURS[int(c)] for c in shown.cls])


def _features(cells: CellTable) -> dict[str, np.ndarray]:
    return {
        "class": np.array([CLASS_NAMES[int(c)] for c in cells.cls], dtype=object),
        "membrane_od": cells.ring_od.astype(np.float32),
        "membrane_od_max": cells.ring_od_max.astype(np.float32),
        "completeness": cells.completeness.astype(np.float32),
        "cytoplasm_od": cells.cytoplasm_od.astype(np.float32),
        "tumour": cells.tumour,
        "outlined_by_dab": cells.outlined,
    }
