"""npe2 writer: a HER2 tile Labels layer saved as QuPath GeoJSON (written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .export import labels_to_geojson, tiles_to_geojson, write_geojson
from .overlay import META_KEY
from .results import TileResults


def tiles_geojson(label_image: np.ndarray, metadata: dict[str, Any], results: TileResults | None = None,
                  *, scale=None, translate=None) -> dict[str, Any]:
    """FeatureCollection of a tile layer.

    When the layer still shows exactly what the model said, the tiles carry the model's
    probabilities and features; after a hand edit they carry the edited classes only.
    """
    info = metadata.get(META_KEY, {})
    name = Path(info.get("slide", "slide")).stem
    labels = np.asarray(label_image)
    if results is not None and labels.shape == results.grid_shape and np.array_equal(
        labels, results.label_image()
    ):
        return tiles_to_geojson(results, name=name)
    size0 = info.get("tile_size0")
    image_scale = info.get("image_scale", (1.0, 1.0))
    image_translate = np.asarray(info.get("image_translate", (0.0, 0.0)), float)
    if scale is None:
        scale = np.asarray(size0, float) * np.asarray(image_scale, float)
    if translate is None:
        translate = (np.asarray(scale, float) - np.asarray(image_scale, float)) / 2 + image_translate
    return labels_to_geojson(labels, scale, np.asarray(translate, float) - image_translate,
                             image_scale=image_scale, name=name,
                             image_shape0=info.get("image_shape0"))


def write_tiles_geojson(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """napari writer for Labels layers: tiles in level-0 pixel coordinates for QuPath."""
    fc = tiles_geojson(np.asarray(data), meta.get("metadata", {}),
                       scale=meta.get("scale"), translate=meta.get("translate"))
    return [str(write_geojson(path, fc))]
