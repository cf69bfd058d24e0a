"""The files of one scored slide: ``<stem>.geojson``, ``<stem>.json``, optionally
``<stem>.csv``, and ``<stem>.cells.geojson`` (with ``csv`` also ``<stem>.cells.csv``) when
the scorer found cells."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..tiles.results import TileResults
from .atomic import ensure_out_dir, write_report_json
from .cells import write_cells_geojson
from .geojson import tiles_to_geojson, write_geojson
from .tables import write_cells_csv, write_tiles_csv


def write_outputs(out_dir: str | os.PathLike, stem: str, report: dict[str, Any],
                  results: TileResults, *, csv: bool = False) -> dict[str, Path]:
    """Write ``<stem>.geojson`` (tiles), ``<stem>.json`` (the report), with ``csv``
    ``<stem>.csv`` (one row per tile), and ``<stem>.cells.geojson`` (QuPath detections; with
    ``csv`` also ``<stem>.cells.csv``, one row per cell) when the results hold cells, into
    ``out_dir``; returns kind -> path."""
    out = ensure_out_dir(out_dir)
    written = {
        "geojson": write_geojson(out / f"{stem}.geojson", tiles_to_geojson(results, name=stem)),
        "report": write_report_json(out / f"{stem}.json", report),
    }
    if csv:
        written["csv"] = write_tiles_csv(out / f"{stem}.csv", results)
    if results.cells is not None and len(results.cells):
        mpp = report.get("mpp") or {}
        um = float(mpp.get("x") or 1.0)
        written["cells"] = write_cells_geojson(out / f"{stem}.cells.geojson", results.cells,
                                               stem, um)
        if csv:
            written["cells_csv"] = write_cells_csv(out / f"{stem}.cells.csv", results.cells, um)
    return written
