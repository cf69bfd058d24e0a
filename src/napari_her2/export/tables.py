"""Tiles as CSV: one row per scored tile with its box, class, probabilities and features;
cells as CSV: one row per cell with its place, class and measurements."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np

from ..tiles.cells import CLASS_NAMES, CellTable
from ..tiles.results import TileResults
from .atomic import atomic_write, write_text

#: rows formatted at a time when the cells are written (a slide holds millions)
CELL_CHUNK = 100_000
#: (CSV column, CellTable column, printf format) of a cell's numbers; NaN is written empty
CELL_NUMBERS: tuple[tuple[str, str, str], ...] = (
    ("x0", "x0", "%.1f"), ("y0", "y0", "%.1f"),
    ("membrane_od", "ring_od", "%.4f"), ("membrane_od_max", "ring_od_max", "%.4f"),
    ("completeness", "completeness", "%.4f"), ("longest_arc", "longest_arc", "%.4f"),
    ("cytoplasm_od", "cytoplasm_od", "%.4f"), ("visible_at_um_per_px", "visible_mpp", "%.3g"),
    ("nucleus_um2", "nucleus_um2", "%.2f"), ("nucleus_eccentricity", "eccentricity", "%.4f"),
)
#: (CSV column, CellTable column) of a cell's classes, written by name
CELL_CLASSES: tuple[tuple[str, str], ...] = (
    ("class", "cls"), ("class_stains_paler", "cls_paler"), ("class_stains_darker", "cls_darker"),
)


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


def _numbers(values: np.ndarray, spec: str) -> np.ndarray:
    """Strings of ``values`` in ``spec``, empty where they are not finite."""
    values = np.asarray(values, np.float64)
    out = np.char.mod(spec, values).astype(object)
    out[~np.isfinite(values)] = ""
    return out


def write_cells_csv(path: str | os.PathLike, cells: CellTable, mpp: float) -> Path:
    """Write the cells as CSV, atomically: the grid cell (row, col) of each cell's tile, its
    centre in level-0 pixels and in µm (``mpp`` µm per level-0 pixel), its class (also with
    the stains read weaker and stronger), whether it is a tumour cell and whether it was
    found only as an interior outlined by DAB, and its measurements."""
    names = np.array([CLASS_NAMES[code] for code in sorted(CLASS_NAMES)], dtype=object)
    offset = -min(CLASS_NAMES)
    header = ["row", "col", *(c for c, _, _ in CELL_NUMBERS[:2]), "x_um", "y_um",
              *(c for c, _ in CELL_CLASSES), "tumour", "outlined_by_dab",
              *(c for c, _, _ in CELL_NUMBERS[2:])]
    with atomic_write(path) as f:
        f.write(",".join(header) + "\n")
        for start in range(0, len(cells), CELL_CHUNK):
            part = cells.take(np.arange(start, min(start + CELL_CHUNK, len(cells))))
            numbers = [_numbers(getattr(part, col), spec) for _, col, spec in CELL_NUMBERS]
            columns = [
                part.row.astype(str), part.col.astype(str), *numbers[:2],
                _numbers(part.x0 * mpp, "%.2f"), _numbers(part.y0 * mpp, "%.2f"),
                *(names[getattr(part, col).astype(np.int64) + offset] for _, col in CELL_CLASSES),
                part.tumour.astype(np.int8).astype(str), part.outlined.astype(np.int8).astype(str),
                *numbers[2:],
            ]
            f.writelines(",".join(row) + "\n" for row in zip(*columns, strict=True))
    return Path(path)
