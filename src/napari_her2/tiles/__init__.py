"""The tiles every later stage shares: where they lie, which are scored, what they got.

- :mod:`.grid`: :class:`TileGrid` (tiles at a size and µm/px over tissue),
  :class:`TileGeometry` (grid cell <-> level-0 pixels <-> napari world, written once) and
  :class:`TileRaster` (the tile layer's raster, cropped at the slide edge);
- :mod:`.regions`: :class:`Region`, polygons with holes that restrict the grid;
- :mod:`.results`: :class:`TileResults`, per-tile probabilities, features and embeddings;
- :mod:`.heatmap`: attention and probability rasters at tile-grid resolution.
"""

from __future__ import annotations

from .grid import TileGeometry, TileGrid, TileRaster, make_grid
from .regions import Polygon, Region, RegionError, as_region, read_geojson_region
from .results import TileResults

__all__ = [
    "Polygon",
    "Region",
    "RegionError",
    "TileGeometry",
    "TileGrid",
    "TileRaster",
    "TileResults",
    "as_region",
    "make_grid",
    "read_geojson_region",
]
