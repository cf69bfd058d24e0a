"""Result layers placed exactly on a slide's image layer (napari data, no Qt).

The tile layer holds ``k`` x ``k`` pixels per tile (a :class:`~napari_her2.tiles.grid.TileRaster`;
k is stored in the layer metadata under ``META_KEY["subpixels"]``). k = 1 (one pixel per
tile) when the slide is a whole number of tiles; otherwise the last row and column of tiles
are partial and the raster, cropped at the slide edge, needs k > 1 so that their squares
stop there instead of running past it (napari has no 2-D clipping). The layer's ``scale``
is the raster pixel size, T / k level-0 pixels times the image layer's own scale (µm per
pixel), and its ``translate`` shifts it by (T / k - 1) / 2 level-0 pixels, because napari
puts pixel centres at integer coordinates: raster pixel j then spans exactly the level-0
pixels [j T / k, (j + 1) T / k) of the slide. Everything that writes or reads the layer's
data goes through the raster (:func:`layer_raster`): ``paint`` to write tile classes,
``per_tile`` to read them back (the most common value of each block after hand edits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..classes import LABEL_NAMES, label_colormap
from ..tiles.grid import TileGeometry, TileRaster

TILES_SUFFIX = " HER2 tiles"
ATTENTION_SUFFIX = " attention"
META_KEY = "napari_her2"
#: key (in ``metadata[META_KEY]``) of the tile layer's raster pixels per tile and axis
SUBPIXELS_KEY = "subpixels"


def class_features() -> dict[str, list]:
    """Labels-layer features naming each label value's class (napari shows them on hover
    and in the layer controls): 1 "0", 2 "1+", 3 "2+", 4 "3+", 5 "non-tumour", ..."""
    values = [0, *sorted(LABEL_NAMES)]
    return {"index": values, "class": ["not scored", *(LABEL_NAMES[v] for v in values[1:])]}


def tile_layer_name(image_name: str) -> str:
    return f"{image_name}{TILES_SUFFIX}"


def tile_layer_kwargs(
    image_name: str,
    grid_shape: tuple[int, int],
    tile_size0: tuple[float, float],
    image_scale: tuple[float, float],
    image_translate: tuple[float, float] = (0.0, 0.0),
    *,
    image_shape0: Sequence[int] | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Empty label raster and napari Labels kwargs for the tile layer of an image layer.

    With ``image_shape0`` (level-0 height, width) the raster is cropped at the slide edge
    (:meth:`TileRaster.fit`); without it, it holds one pixel per tile.
    """
    from napari.utils.colormaps import DirectLabelColormap

    shape0 = None if image_shape0 is None else (int(image_shape0[0]), int(image_shape0[1]))
    raster = TileRaster.fit(grid_shape, tile_size0, shape0)
    scale, translate = raster.placement(tile_size0, image_scale, image_translate)
    meta = {
        META_KEY: {
            "tile_size0": list(tile_size0),
            "image_scale": list(image_scale),
            "image_translate": list(image_translate),
            **({} if shape0 is None else {"image_shape0": list(shape0)}),
            **(extra_meta or {}),
            SUBPIXELS_KEY: raster.k,
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
    return raster.blank(), kwargs


def layer_raster(layer: Any) -> TileRaster:
    """The tile raster of a tile layer (anything with ``data`` and ``metadata``)."""
    k = int(layer.metadata.get(META_KEY, {}).get(SUBPIXELS_KEY, 1))
    return TileRaster.of(np.shape(layer.data), k)


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


def tile_labels(layer: Any) -> np.ndarray:
    """(rows, cols) class label of every tile as the tile layer shows it (hand edits too)."""
    return layer_raster(layer).per_tile(np.asarray(layer.data))


def viewer_camera(viewer: Any) -> Any:
    """The viewer's camera: ``viewer.scene.camera`` since napari 0.9 (``viewer.camera`` is
    deprecated there), ``viewer.camera`` before."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera
