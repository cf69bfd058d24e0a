"""npe2 writer: a HER2 tile Labels layer saved as QuPath GeoJSON (written atomically)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .export import layer_geojson, write_geojson


def write_tiles_geojson(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """napari writer for Labels layers: tiles in level-0 pixel coordinates for QuPath."""
    fc = layer_geojson(np.asarray(data), meta.get("metadata", {}),
                       scale=meta.get("scale"), translate=meta.get("translate"))
    return [str(write_geojson(path, fc))]
