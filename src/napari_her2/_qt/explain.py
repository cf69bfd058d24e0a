"""Explanation overlays: the MIL attention heatmap and Grad-CAM of one tile.

Both are Image layers placed exactly over the slide's image layer (see ``overlay``); showing
one again replaces the previous layer of the same name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import Her2Error
from ..run.pipeline import SlideReport
from ..tiles.grid import TileRaster
from .layers import ATTENTION_SUFFIX, META_KEY, tile_heatmap_placement

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
