"""Tile classes shared by every model, layer and report.

Models have their own class lists (4 HER2 scores, or 6 with "normal" and "noise"); each of
their classes maps onto one of the canonical tile outcomes below, which fix the label values
of the tile layer, the colours, and what counts as a tumour tile for the slide score.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

HER2_SCORES: tuple[str, ...] = ("0", "1+", "2+", "3+")
NON_TUMOUR = "non-tumour"
ARTEFACT = "artefact"
UNREADABLE = "unreadable"

#: label value in the tile layer for each canonical outcome; 0 is "not scored" (background)
LABEL_VALUES: dict[str, int] = {
    "0": 1,
    "1+": 2,
    "2+": 3,
    "3+": 4,
    NON_TUMOUR: 5,
    ARTEFACT: 6,
    UNREADABLE: 7,
}
LABEL_NAMES: dict[int, str] = {v: k for k, v in LABEL_VALUES.items()}

#: RGB colours (0-255): 0 blue, 1+ yellow, 2+ orange, 3+ red, the rest greys
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "0": (49, 99, 206),
    "1+": (240, 214, 50),
    "2+": (245, 140, 30),
    "3+": (214, 39, 40),
    NON_TUMOUR: (160, 160, 160),
    ARTEFACT: (90, 90, 90),
    UNREADABLE: (0, 0, 0),
}

#: model class names that mean "not tumour" or "not usable"
_ALIASES: dict[str, str] = {
    "normal": NON_TUMOUR,
    "no tumour": NON_TUMOUR,
    "no-tumour": NON_TUMOUR,
    "non-tumour": NON_TUMOUR,
    "stroma": NON_TUMOUR,
    "background": NON_TUMOUR,
    "noise": ARTEFACT,
    "artefact": ARTEFACT,
    "artifact": ARTEFACT,
}


def canonical_class(name: str) -> str:
    """Map a model's class name onto a canonical outcome ("0".."3+", non-tumour, artefact)."""
    key = name.strip()
    if key in HER2_SCORES:
        return key
    alt = key.replace("her2", "").replace("HER2", "").strip(" _-:")
    if alt in HER2_SCORES:
        return alt
    if alt in ("1", "2", "3"):
        return alt + "+"
    try:
        return _ALIASES[key.lower()]
    except KeyError:
        raise ValueError(f"class name {name!r} maps to no HER2 tile outcome") from None


def label_values_for(classes: tuple[str, ...] | list[str]) -> np.ndarray:
    """Label value of each model class, in the model's class order."""
    return np.array([LABEL_VALUES[canonical_class(c)] for c in classes], dtype=np.uint8)


def label_colormap() -> dict[int | None, tuple[float, float, float, float]]:
    """napari direct colormap: label value -> RGBA in 0..1, background transparent."""
    cmap: dict[int | None, tuple[float, float, float, float]] = {
        0: (0.0, 0.0, 0.0, 0.0),
        None: (0.0, 0.0, 0.0, 0.0),
    }
    for name, value in LABEL_VALUES.items():
        r, g, b = CLASS_COLORS[name]
        cmap[value] = (r / 255, g / 255, b / 255, 1.0)
    return cmap


def borderline_text(report: Mapping[str, Any]) -> str | None:
    """"0 / 1+" for a report (a call's or a slide report's ``to_dict()``) whose call is
    borderline between two scores; None for a clear call or no call."""
    pair = report.get("borderline")
    return " / ".join(pair) if pair else None


#: table columns of the percentages of tumour cells per class (batch summary, evaluation,
#: TMA cores), in the order of :data:`HER2_SCORES`
PERCENT_COLUMNS: tuple[str, ...] = tuple(f"tumour_pct_{s}" for s in HER2_SCORES)


def percent_columns(percent: Mapping[str, float] | None) -> dict[str, float | None]:
    """``{"tumour_pct_0": .., .., "tumour_pct_3+": ..}`` of a cell summary's
    ``tumour_percent`` (None each without tumour cells, as for a tile model)."""
    percent = percent or {}
    return {column: percent.get(s) for column, s in zip(PERCENT_COLUMNS, HER2_SCORES,
                                                         strict=True)}


def tumour_cell_columns(cells: Mapping[str, Any] | None) -> dict[str, Any]:
    """``n_tumour_cells`` and the :data:`PERCENT_COLUMNS` of a cell summary (a report's
    ``cells``, ``CellTable.summary()``); None each without one, as for a tile model."""
    cells = cells or {}
    return {"n_tumour_cells": cells.get("n_tumour_cells"),
            **percent_columns(cells.get("tumour_percent"))}
