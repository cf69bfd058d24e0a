"""Tiles as CSV: one row per scored tile with its box, class, probabilities and features."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from ..tiles.results import TileResults
from .atomic import write_text


def tiles_csv_text(results: TileResults) -> str:
    """CSV of the tiles: row, col, level-0 box, class, probabilities, features."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["row", "col", "x0", "y0", "x1", "y1", "class",
                     *(f"p({c})" for c in results.classes), *results.feature_names])
    boxes = results.bboxes0().tolist()
    probs = results.probs.tolist()
    feats = results.features.tolist()
    for i, (r, c, outcome) in enumerate(zip(results.rows.tolist(), results.cols.tolist(),
                                            results.tile_outcomes(), strict=True)):
        ok = bool(results.readable[i])
        p = [_cell(v) for v in probs[i]] if ok else [""] * len(results.classes)
        writer.writerow([r, c, *(_cell(v) for v in boxes[i]), outcome, *p,
                         *(_cell(v) for v in feats[i])])
    return buf.getvalue()


def _cell(v: float) -> str:
    """A CSV number: shortest round-trip form, empty for NaN/infinity."""
    return repr(v) if math.isfinite(v) else ""


def write_tiles_csv(path: str | os.PathLike, results: TileResults) -> Path:
    """Write the tiles CSV atomically."""
    return write_text(path, tiles_csv_text(results))
