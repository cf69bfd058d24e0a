"""Result layers placed exactly on a slide's image layer (napari data, no Qt).

The tile layer holds one pixel per tile. Its ``scale`` is the tile size in level-0 pixels
times the image layer's own scale (µm per pixel), and its ``translate`` shifts it by
(tile - 1) / 2 level-0 pixels, because napari puts pixel centres at integer coordinates:
tile pixel j then spans exactly the level-0 pixels [j * T, (j + 1) * T) of the slide.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .classes import LABEL_NAMES, label_colormap
from .tiling import TileGeometry

TILES_SUFFIX = " HER2 tiles"
ATTENTION_SUFFIX = " attention"
META_KEY = "napari_her2"


def class_features() -> dict[str, list]:
    """Labels-layer features naming each label value's class (napari shows them on hover
    and in the layer controls): 1 "0", 2 "1+", 3 "2+", 4 "3+", 5 "non-tumour", ..."""
    values = [0, *sorted(LABEL_NAMES)]
    return {"index": values, "class": ["not scored", *(LABEL_NAMES[v] for v in values[1:])]}


def tile_layer_name(image_name: str) -> str:
    return f"{image_name}{TILES_SUFFIX}"


def grid_placement(
    tile_size0: tuple[float, float],
    image_scale: tuple[float, float],
    image_translate: tuple[float, float] = (0.0, 0.0),
    origin0: tuple[float, float] = (0.0, 0.0),
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(scale, translate) of a one-pixel-per-tile layer over an image layer."""
    geometry = TileGeometry((1, 1), tile_size0, origin0)
    return geometry.layer_placement(image_scale, image_translate)


def tile_layer_kwargs(
    image_name: str,
    grid_shape: tuple[int, int],
    tile_size0: tuple[float, float],
    image_scale: tuple[float, float],
    image_translate: tuple[float, float] = (0.0, 0.0),
    *,
    extra_meta: dict[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Empty label raster and napari Labels kwargs for the tile layer of an image layer."""
    from napari.utils.colormaps import DirectLabelColormap

    scale, translate = grid_placement(tile_size0, image_scale, image_translate)
    meta = {
        META_KEY: {
            "tile_size0": list(tile_size0),
            "image_scale": list(image_scale),
            "image_translate": list(image_translate),
            **(extra_meta or {}),
        }
    }
    kwargs = {
        "name": tile_layer_name(image_name),
        "scale": scale,
        "translate": translate,
        "opacity": 0.45,
        "colormap": DirectLabelColormap(color_dict=label_colormap()),
        "metadata": meta,
        "features": class_features(),
    }
    return np.zeros(grid_shape, np.uint8), kwargs


def tile_heatmap_placement(
    row: int,
    col: int,
    heat_shape: tuple[int, int],
    tile_size0: tuple[float, float],
    image_scale: tuple[float, float],
    image_translate: tuple[float, float] = (0.0, 0.0),
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(scale, translate) of an (h, w) map drawn exactly over tile (row, col)."""
    geometry = TileGeometry((row + 1, col + 1), tile_size0)
    return geometry.map_placement(heat_shape, image_scale, image_translate, cell=(row, col))
