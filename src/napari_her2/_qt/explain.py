"""Explanation overlays: the MIL attention heatmap and Grad-CAM of one tile.

Both are Image layers placed exactly over the slide's image layer; showing one again replaces
the previous layer of the same name. :class:`ExplainPanel` holds the Grad-CAM button and shows
the attention heatmap of each finished report that has one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import QPushButton, QVBoxLayout, QWidget

from ..errors import Her2Error
from ..run.pipeline import SlideReport
from ..tiles.grid import TileRaster
from .jobs import error_text
from .layers import ATTENTION_SUFFIX, META_KEY, layer_raster, tile_heatmap_placement
from .panel import ScoringPanel

if TYPE_CHECKING:
    import napari

    from .slide_scoring import SlideScoring

GRADCAM_SUFFIX = " Grad-CAM"


def _replace_image(viewer, image, name: str, data: np.ndarray, placement, **kwargs: Any):
    """Add ``data`` as an Image layer over ``image`` (0-1 values), replacing ``name``."""
    scale, translate = placement
    if name in viewer.layers:
        viewer.layers.remove(name)
    layer = viewer.add_image(data, name=name, scale=scale, translate=translate, opacity=0.5,
                             contrast_limits=(0.0, 1.0), units=tuple(image.units[-2:]),
                             **kwargs)
    layer.colorbar.visible = True  # what the colours mean (0 = lowest, 1 = highest)
    return layer


def show_attention(viewer, image, report: SlideReport):
    """The slide model's attention heatmap as ``<image> attention``."""
    from ..tiles.heatmap import attention_raster

    attention = report.call.evidence.attention
    if attention is None:
        raise Her2Error(f"{report.slide.name}: the slide call {report.call.method!r} gives no "
                        "attention weights")
    grid = report.grid
    tiles = TileRaster.fit(grid.shape, grid.tile_size0, report.slide.dimensions)
    raster = tiles.expand(attention_raster(report.results, attention))  # stops at the edge
    placement = tiles.placement(grid.tile_size0, tuple(image.scale[-2:]),
                                tuple(image.translate[-2:]))
    return _replace_image(viewer, image, f"{image.name}{ATTENTION_SUFFIX}", raster, placement,
                          colormap="turbo",
                          metadata={META_KEY: {"slide_model": report.call.method}})


def show_gradcam(viewer, image, report: SlideReport, row: int, col: int, heat: np.ndarray):
    """A Grad-CAM map drawn over tile (row, col) as ``<image> Grad-CAM``."""
    placement = tile_heatmap_placement(row, col, heat.shape, report.grid.tile_size0,
                                       tuple(image.scale[-2:]), tuple(image.translate[-2:]))
    return _replace_image(viewer, image, f"{image.name}{GRADCAM_SUFFIX}", heat, placement,
                          colormap="inferno", blending="additive",
                          metadata={META_KEY: {"tile": [row, col]}})


def gradcam_job(report: SlideReport, row: int, col: int) -> np.ndarray:
    """Grad-CAM map of one scored tile (runs in a worker thread)."""
    from ..models import TorchTilePredictor, grad_cam
    from ..run.inference import read_tile

    tile = read_tile(report.slide, report.grid, row, col)
    if tile is None:
        raise Her2Error(f"{report.slide.name}: tile ({row}, {col}) is unreadable")
    predictor = report.predictor
    if not isinstance(predictor, TorchTilePredictor):
        raise Her2Error(f"{report.slide.name}: Grad-CAM needs a CNN checkpoint, not "
                        f"{predictor.name!r}")
    return grad_cam(predictor.model, tile, card=predictor.card)


class ExplainPanel(ScoringPanel):
    """Grad-CAM of the tile under the cursor, and the attention heatmap of a finished report."""

    def __init__(self, viewer: napari.Viewer, scoring: SlideScoring,
                 parent: QWidget | None = None) -> None:
        super().__init__(viewer, scoring, parent)
        self.gradcam_button = QPushButton("Grad-CAM of tile under cursor")
        self.gradcam_button.setEnabled(False)
        self.gradcam_button.setToolTip("Explain the deep model's call on the tile under the "
                                       "mouse (CNN checkpoints only)")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.gradcam_button)
        self.gradcam_button.clicked.connect(lambda: self.explain_tile())

    def set_running(self, running: bool) -> None:
        """Grad-CAM needs a report of a CNN checkpoint and no job running."""
        report = self.scoring.report
        self.gradcam_button.setEnabled(
            not running and report is not None and hasattr(report.predictor, "model"))

    def show_report_attention(self, report: SlideReport) -> None:
        """Show the slide model's attention heatmap, when the call has one."""
        if report.call.evidence.attention is not None:
            show_attention(self.viewer, self.viewer.layers[self.scoring.image_name], report)

    def tile_under_cursor(self) -> tuple[int, int] | None:
        """(row, col) of the tile under the mouse, or None outside the grid."""
        tiles = self.scoring.tiles_layer
        if tiles is None:
            return None
        pos = tiles.world_to_data(self.viewer.cursor.position)
        return layer_raster(tiles).tile_at(*pos[-2:])

    def explain_tile(self, row: int | None = None, col: int | None = None):
        """Grad-CAM of a scored tile (default: under the cursor) as an Image layer on it."""
        from napari.qt.threading import create_worker

        report = self.scoring.report
        if report is None or not hasattr(report.predictor, "model"):
            self.failed.emit("Grad-CAM needs a slide scored with a CNN checkpoint")
            return None
        where = (row, col) if row is not None and col is not None else self.tile_under_cursor()
        if where is None:
            self.failed.emit("move the mouse over a tile of the tile layer first")
            return None
        worker = create_worker(gradcam_job, report, *where, _start_thread=False)
        worker.returned.connect(lambda result: self._show_gradcam(*where, result))
        worker.errored.connect(lambda err: self.failed.emit(error_text(err)))
        worker.start()
        return worker

    def _show_gradcam(self, row: int, col: int, heat: np.ndarray) -> None:
        report = self.scoring.report
        if report is None:  # a new run started meanwhile
            return
        image = self.viewer.layers[self.scoring.image_name]
        show_gradcam(self.viewer, image, report, row, col, heat)
        self.message.emit(f"Grad-CAM of tile ({row}, {col})")
