"""The outputs of a TMA run (:class:`napari_her2.tma.TmaReport`): one CSV row and one QuPath
annotation per core, written atomically."""

from __future__ import annotations

import csv
import io
import os
import uuid
from pathlib import Path
from typing import Any

from ..classes import CLASS_COLORS, PERCENT_COLUMNS
from ..tiles.regions import circle_polygon
from .atomic import ensure_out_dir, write_text
from .geojson import ID_NAMESPACE, QUPATH_NAMES, write_geojson

#: columns of ``<stem>_cores.csv``, in order (the keys of ``TmaReport.rows()``)
CSV_FIELDS = ("core", "row", "column", "centre_x_um", "centre_y_um", "diameter_um",
              "tissue_fraction", "missing", "n_tiles", "score", "category", "confidence",
              "borderline", "no_call_reason", "n_tumour_cells", *PERCENT_COLUMNS)


def cores_geojson(report: Any) -> dict[str, Any]:
    """QuPath FeatureCollection: one annotation per core outline (level-0 px), named by its
    id, classed by its score, with its measurements."""
    features = []
    for s, row in zip(report.scores, report.rows(), strict=True):
        cx, cy = s.core.centre
        ring = circle_polygon(cx, cy, s.core.diameter / 2).round(2).tolist()
        name = QUPATH_NAMES.get(s.call.score or "", "No call")
        colour = list(CLASS_COLORS.get(s.call.score or "", (128, 128, 128)))
        props: dict[str, Any] = {
            "objectType": "annotation", "name": s.core.id, "isLocked": False,
            "classification": {"name": "Missing core" if s.core.missing else name,
                               "color": colour},
            "measurements": {k: float(row[k]) for k in ("row", "column", "centre_x_um",
                             "centre_y_um", "diameter_um", "tissue_fraction", "n_tiles")},
        }
        if s.call.confidence is not None:
            props["measurements"]["confidence"] = float(s.call.confidence)
        fid = str(uuid.uuid5(ID_NAMESPACE, f"{report.stem}/core/{s.core.id}"))
        features.append({"type": "Feature", "id": fid, "properties": props,
                         "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]}})
    return {"type": "FeatureCollection", "features": features}


def write_tma_outputs(report: Any, out_dir: str | os.PathLike) -> dict[str, Path]:
    """``<stem>_cores.csv`` and ``<stem>_cores.geojson`` in ``out_dir`` (atomic writes)."""
    out = ensure_out_dir(out_dir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(report.rows())
    return {"csv": write_text(out / f"{report.stem}_cores.csv", buf.getvalue()),
            "geojson": write_geojson(out / f"{report.stem}_cores.geojson",
                                     cores_geojson(report))}
