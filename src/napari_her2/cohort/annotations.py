"""Tumour cells against regions a pathologist annotated: how well a cell scorer finds tumour.

A labelled folder says what each image's score should be; annotated regions say where its
carcinoma is. For each image with a QuPath GeoJSON of classified regions (``Tumor``,
``Stroma``, ``Fat``, ``Normal``, ... as drawn), the cells the scorer found are counted per
region class, with those of them it called tumour cells. Pooled over the folder this gives
the share of each class's cells that are tumour cells, the **precision** of the tumour cells
(of those inside any annotated region, the share inside a tumour region) and their
**recall** (of the cells in tumour regions, the share called tumour): the figures the tumour
finder is judged by (docs/validation.md). ``Ignore*`` / ``Exclude`` shapes are subtracted
from every class, as they are from a region of interest.

A region file is ``<image stem>.geojson`` in the annotation folder, in the image's level-0
pixels (QuPath's export). Region files are read before anything is scored, so a malformed
one stops the evaluation with one line naming it, before any output is written.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..tiles.cells import CellTable
from ..tiles.regions import Polygon, Region, RegionError, read_geojson_region

#: the region class whose cells the tumour cells should be (QuPath's default class name)
TUMOUR_CLASS = "Tumor"
REGIONS_CSV_FIELDS: tuple[str, ...] = ("file", "region_class", "n_cells", "n_tumour_cells")

#: per region class: (cells inside, tumour cells inside)
Counts = dict[str, tuple[int, int]]


def region_files(images: Iterable[Path], folder: str | os.PathLike) -> dict[Path, Region]:
    """The annotated regions of ``images`` that have a ``<stem>.geojson`` in ``folder``, read
    now; a missing folder or a malformed file raises :class:`RegionError` naming it."""
    root = Path(folder)
    if not root.is_dir():
        raise RegionError(f"{root}: the annotation folder does not exist")
    found = {}
    for image in images:
        path = root / f"{image.stem}.geojson"
        if path.is_file():
            found[image] = read_geojson_region(path)
    return found


def cells_in_regions(cells: CellTable, region: Region) -> Counts:
    """{region class: (cells inside, tumour cells inside)} of ``cells`` (level-0 pixels; a
    tumour cell has a class, ``cls`` >= 0). A cell inside two shapes of one class counts once;
    cells inside an excluded shape count for no class."""
    xy = np.stack([np.asarray(cells.x0, np.float64), np.asarray(cells.y0, np.float64)], axis=1)
    tumour = np.asarray(cells.cls) >= 0
    by_class: dict[str, list[Polygon]] = {}
    for poly in region.include:
        by_class.setdefault(poly.label or "(unclassified)", []).append(poly)
    inside = {name: Region(tuple(polys), region.exclude).contains(xy)
              for name, polys in sorted(by_class.items())}
    return {name: (int(m.sum()), int((m & tumour).sum())) for name, m in inside.items()}


def pooled(per_image: Mapping[str, Counts], tumour_class: str = TUMOUR_CLASS) -> dict[str, Any]:
    """The folder's figures: per class its cells, tumour cells and their share; the
    precision and recall of the tumour cells against ``tumour_class`` regions (None where
    there is nothing to divide by)."""
    total: dict[str, list[int]] = {}
    for counts in per_image.values():
        for name, (n, t) in counts.items():
            pair = total.setdefault(name, [0, 0])
            pair[0] += n
            pair[1] += t
    classes = {name: {"n_cells": n, "n_tumour_cells": t, "tumour_share": _ratio(t, n)}
               for name, (n, t) in sorted(total.items())}
    n_in, t_in = total.get(tumour_class, [0, 0])
    all_tumour = sum(t for _, t in total.values())
    return {"images": len(per_image), "tumour_class": tumour_class, "classes": classes,
            "precision": _ratio(t_in, all_tumour), "recall": _ratio(t_in, n_in)}


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def regions_csv_text(per_image: Mapping[str, Counts]) -> str:
    """One row per image and region class: ``REGIONS_CSV_FIELDS``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REGIONS_CSV_FIELDS)
    for file, counts in per_image.items():
        writer.writerows([file, name, n, t] for name, (n, t) in counts.items())
    return buf.getvalue()


def format_regions(figures: Mapping[str, Any]) -> str:
    """"tumour cells against annotated regions (N images): precision P, recall R"."""
    def text(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    return (f"tumour cells against annotated regions ({figures['images']} images): "
            f"precision {text(figures['precision'])}, recall {text(figures['recall'])}")


__all__ = ["REGIONS_CSV_FIELDS", "TUMOUR_CLASS", "cells_in_regions", "format_regions",
           "pooled", "region_files", "regions_csv_text"]
