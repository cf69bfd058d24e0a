"""The cells of one slide, placed on it: what the cell overlay, the cell export and the
report's cell counts share.

A scorer that finds cells returns them per batch as :class:`~napari_her2.predict.CellColumns`
in tile pixels; :meth:`CellTable.extend` places them in level-0 pixels of the slide through the
tile grid and keeps their measurements. Counting follows the guideline: the percentages are
of tumour cells, per HER2 class.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..classes import HER2_SCORES, NON_TUMOUR
from ..predict import NOT_TUMOUR, CellColumns
from .grid import TileGeometry

#: per-cell measurements a scorer may leave out (NaN in the table then)
OPTIONAL_MEASUREMENTS: tuple[str, ...] = ("ring_od_max", "cytoplasm_od", "longest_arc",
                                          "eccentricity")
#: class code -> name (tumour cells 0..3, the rest not tumour)
CLASS_NAMES: dict[int, str] = {i: s for i, s in enumerate(HER2_SCORES)} | {NOT_TUMOUR: NON_TUMOUR}


def _empty(dtype: Any) -> Any:
    return field(default_factory=lambda: np.zeros(0, dtype))


@dataclass
class CellTable:
    """Cells in level-0 pixels: ``y0``, ``x0`` their centres; ``row``, ``col`` their tile's
    grid cell; the rest as in :class:`~napari_her2.predict.CellColumns` (``outlined`` False,
    ``cls_paler``, ``cls_darker`` equal to ``cls`` and the measurements ``ring_od_max``,
    ``cytoplasm_od``, ``longest_arc``, ``eccentricity`` NaN where the scorer does not say)."""

    row: np.ndarray = _empty(np.int32)
    col: np.ndarray = _empty(np.int32)
    y0: np.ndarray = _empty(np.float32)
    x0: np.ndarray = _empty(np.float32)
    cls: np.ndarray = _empty(np.int8)
    ring_od: np.ndarray = _empty(np.float32)
    completeness: np.ndarray = _empty(np.float32)
    visible_mpp: np.ndarray = _empty(np.float32)
    nucleus_um2: np.ndarray = _empty(np.float32)
    outlined: np.ndarray = _empty(np.bool_)
    cls_paler: np.ndarray = _empty(np.int8)
    cls_darker: np.ndarray = _empty(np.int8)
    ring_od_max: np.ndarray = _empty(np.float32)
    cytoplasm_od: np.ndarray = _empty(np.float32)
    longest_arc: np.ndarray = _empty(np.float32)
    eccentricity: np.ndarray = _empty(np.float32)

    def __len__(self) -> int:
        return int(self.row.shape[0])

    def extend(self, cells: CellColumns, rows: np.ndarray, cols: np.ndarray,
               tile_px: tuple[int, int], geometry: TileGeometry) -> None:
        """Append one batch: ``rows``/``cols`` are the grid cells of the batch's tiles (in
        the order ``cells.tile`` indexes), ``tile_px`` the (h, w) of a tile as the predictor
        saw it."""
        if len(cells) == 0:
            return
        tile = np.asarray(cells.tile, np.int64)
        r, c = np.asarray(rows)[tile], np.asarray(cols)[tile]
        (th, tw), (oy, ox) = geometry.tile_size0, geometry.origin0
        add = {
            "row": r, "col": c,
            "y0": oy + r * th + (np.asarray(cells.y) + 0.5) * th / tile_px[0],
            "x0": ox + c * tw + (np.asarray(cells.x) + 0.5) * tw / tile_px[1],
            "cls": cells.cls, "ring_od": cells.ring_od, "completeness": cells.completeness,
            "visible_mpp": cells.visible_mpp, "nucleus_um2": cells.nucleus_um2,
            "outlined": (np.zeros(len(cells), bool) if cells.outlined is None
                         else cells.outlined),
            "cls_paler": cells.cls if cells.cls_paler is None else cells.cls_paler,
            "cls_darker": cells.cls if cells.cls_darker is None else cells.cls_darker,
            **{name: np.full(len(cells), np.nan) if getattr(cells, name) is None
               else getattr(cells, name) for name in OPTIONAL_MEASUREMENTS},
        }
        for f in fields(self):
            old = getattr(self, f.name)
            setattr(self, f.name, np.concatenate([old, np.asarray(add[f.name], old.dtype)]))

    @property
    def tumour(self) -> np.ndarray:
        return self.cls != NOT_TUMOUR

    def class_counts(self) -> dict[str, int]:
        """Cells per class name ("0".."3+" for tumour cells, then non-tumour)."""
        codes, counts = np.unique(self.cls, return_counts=True)
        found = dict(zip(codes.tolist(), counts.tolist(), strict=True))
        return {name: int(found.get(code, 0)) for code, name in CLASS_NAMES.items()}

    def tumour_percentages(self) -> dict[str, float]:
        """Percent of tumour cells in each HER2 class (empty without tumour cells)."""
        counts = self.class_counts()
        n = sum(counts[s] for s in HER2_SCORES)
        return {s: 100.0 * counts[s] / n for s in HER2_SCORES} if n else {}

    def summary(self) -> dict[str, Any]:
        """The report's cell figures: counts per class, the percentages of tumour cells, and
        how many tumour cells were found only as interiors outlined by DAB (no haematoxylin
        nucleus: a stained duct's lumens read that way too, so a call resting on them wants
        a look)."""
        counts = self.class_counts()
        return {
            "n_cells": len(self),
            "n_tumour_cells": int(self.tumour.sum()),
            "n_tumour_outlined": int((self.tumour & self.outlined).sum()),
            "by_class": counts,
            "tumour_percent": {k: round(v, 2) for k, v in self.tumour_percentages().items()},
        }

    def in_box(self, y0: float, x0: float, y1: float, x1: float) -> np.ndarray:
        """Indices of the cells whose centre lies in the level-0 box."""
        inside = (self.y0 >= y0) & (self.y0 < y1) & (self.x0 >= x0) & (self.x0 < x1)
        return np.flatnonzero(inside)

    def take(self, index: np.ndarray) -> CellTable:
        """The cells at ``index``, as a new table."""
        return CellTable(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def outlined_text(summary: dict[str, Any]) -> str:
    """"455 (97%) outlined by DAB only, no blue nucleus", or "" when there are none.

    ``summary`` is :meth:`CellTable.summary`'s. These tumour cells were found as unstained
    interiors inside stained membranes: the lumens and secretion of a stained normal duct read
    that way too, so a call that rests on them is worth a look.
    """
    n, total = summary["n_tumour_outlined"], summary["n_tumour_cells"]
    if not n or not total:
        return ""
    return f"{n:,} ({100 * n / total:.0f}%) outlined by DAB only, no blue nucleus"
