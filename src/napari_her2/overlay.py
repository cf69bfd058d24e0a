"""Result layers placed exactly on a slide's image layer (napari data, no Qt).

The tile layer holds one pixel per tile. Its ``scale`` is the tile size in level-0 pixels
times the image layer's own scale (µm per pixel), and its ``translate`` shifts it by
(tile - 1) / 2 level-0 pixels, because napari puts pixel centres at integer coordinates:
tile pixel j then spans exactly the level-0 pixels [j * T, (j + 1) * T) of the slide.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .classes import label_colormap

TILES_SUFFIX = " HER2 tiles"
ATTENTION_SUFFIX = " attention"
META_KEY = "napari_her2"


def tile_layer_name(image_name: str) -> str:
    return f"{image_name}{TILES_SUFFIX}"


def grid_placement(
    tile_size0: tuple[float, float],
    image_scale: tuple[float, float],
    image_translate: tuple[float, float] = (0.0, 0.0),
    origin0: tuple[float, float] = (0.0, 0.0),
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(scale, translate) of a one-pixel-per-tile layer over an image layer."""
    scale = (tile_size0[0] * image_scale[0], tile_size0[1] * image_scale[1])
    translate = tuple(
        image_translate[i] + (origin0[i] + (tile_size0[i] - 1) / 2) * image_scale[i]
        for i in range(2)
    )
    return scale, translate  # type: ignore[return-value]


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
    px0 = (tile_size0[0] / heat_shape[0], tile_size0[1] / heat_shape[1])  # level-0 px per map px
    origin0 = (row * tile_size0[0], col * tile_size0[1])
    scale = (px0[0] * image_scale[0], px0[1] * image_scale[1])
    translate = tuple(
        image_translate[i] + (origin0[i] + (px0[i] - 1) / 2) * image_scale[i] for i in range(2)
    )
    return scale, translate  # type: ignore[return-value]
