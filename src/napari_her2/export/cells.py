"""The cells of a slide as QuPath detections: ``<stem>.cells.geojson``.

Each cell is a QuPath detection object (``objectType: "detection"``) whose geometry is its
nucleus (a 12-sided polygon of the nucleus area, in level-0 pixels), classified by its HER2
class (``HER2 0`` .. ``HER2 3+`` for tumour cells, ``Non-tumour`` otherwise), with its
measurements: membrane DAB OD (mean and 95th percentile), completeness, the longest stained
arc, the cytoplasm's DAB OD, the coarsest µm/px at which its membrane is visible, nucleus
area and eccentricity, and whether it is a tumour cell (a measurement the scorer did not
make, or a membrane not visible at all, is left out). A whole slide holds millions of cells,
so the file is written feature by feature into a temporary file that is renamed when
complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..scoring.cells import edited_cells
from ..tiles.cells import CLASS_NAMES, CellTable
from ..tiles.results import TileResults
from .atomic import atomic_write
from .geojson import MEASUREMENT_DECIMALS, _classification, tile_id

#: vertices of the polygon that draws a nucleus
NUCLEUS_VERTICES = 12
_ANGLES = np.linspace(0.0, 2.0 * np.pi, NUCLEUS_VERTICES, endpoint=False)
#: (QuPath measurement name, CellTable column, decimals) of the measurements written only
#: where they are finite
OPTIONAL: tuple[tuple[str, str, int], ...] = (
    ("Membrane DAB OD max", "ring_od_max", MEASUREMENT_DECIMALS),
    ("Membrane longest arc", "longest_arc", MEASUREMENT_DECIMALS),
    ("Cytoplasm DAB OD", "cytoplasm_od", MEASUREMENT_DECIMALS),
    ("Membrane visible at um/px", "visible_mpp", 3),
    ("Nucleus eccentricity", "eccentricity", MEASUREMENT_DECIMALS),
)


def cell_features(cells: CellTable, name: str, mpp: float,
                  edited: np.ndarray | None = None) -> Any:
    """The cells as QuPath GeoJSON features (a generator: a slide has millions); ``edited``:
    which cells lie in a tile a pathologist relabelled (a measurement of 1 on those)."""
    radius0 = np.sqrt(np.maximum(cells.nucleus_um2, 1.0) / np.pi) / mpp
    d = MEASUREMENT_DECIMALS
    classification = {code: _classification(n) for code, n in CLASS_NAMES.items()}
    for i in range(len(cells)):
        x, y, r = float(cells.x0[i]), float(cells.y0[i]), float(radius0[i])
        ring = np.round(np.stack([x + r * np.cos(_ANGLES), y + r * np.sin(_ANGLES)], 1), 2)
        ring_list = ring.tolist()
        code = int(cells.cls[i])
        measurements = {
            "Membrane DAB OD": round(float(cells.ring_od[i]), d),
            "Membrane completeness": round(float(cells.completeness[i]), d),
            "Nucleus area um^2": round(float(cells.nucleus_um2[i]), 2),
            "Tumour": float(code in range(4)),
            "Outlined by DAB only": float(cells.outlined[i]),
        }
        if edited is not None and edited[i]:
            measurements["Tile relabelled by hand"] = 1.0
        for key, column, decimals in OPTIONAL:
            value = float(getattr(cells, column)[i])
            if np.isfinite(value):
                measurements[key] = round(value, decimals)
        yield {
            "type": "Feature",
            "id": tile_id(f"{name}/cells", i, 0),
            "geometry": {"type": "Polygon", "coordinates": [ring_list + ring_list[:1]]},
            "properties": {"objectType": "detection", "classification": classification[code],
                           "measurements": measurements, "isLocked": False},
        }


def write_cells_geojson(path: str | os.PathLike, cells: CellTable, name: str,
                        mpp: float, edited: np.ndarray | None = None) -> Path:
    """Write the cells as a QuPath GeoJSON FeatureCollection, atomically (``edited``: as
    :func:`cell_features`)."""
    with atomic_write(path) as f:
        f.write('{"type":"FeatureCollection","features":[')
        for i, feature in enumerate(cell_features(cells, name, mpp, edited)):
            f.write(("," if i else "") + json.dumps(feature, separators=(",", ":")))
        f.write("]}")
    return Path(path)


def write_edited_cells(path: str | os.PathLike, results: TileResults, label_image: np.ndarray,
                       name: str, mpp: float) -> Path | None:
    """Write the cells of ``results`` with a pathologist's tile corrections (``label_image``,
    :func:`~napari_her2.scoring.cells.edited_cells`) as QuPath detections, flagging those of
    relabelled tiles; None (nothing written) when the results hold no cells."""
    if results.cells is None or len(results.cells) == 0:
        return None
    cells, edited = edited_cells(results, label_image)
    return write_cells_geojson(path, cells, name, mpp, edited)
