"""Review files: a pathologist's tile corrections as QuPath GeoJSON, and reading them back.

``<slide stem>.review.geojson`` beside the slide holds one QuPath tile object per reviewed
tile: its classification is the reviewed class, ``measurements`` carry the model's
probabilities and the original label value, and ``properties.her2Review`` the original class,
the new class, the time, the reviewer and the grid cell. QuPath opens it as tiles; the
training package reads it with :func:`read_review` as labelled tiles.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import LABEL_VALUES
from ..errors import Her2Error
from ..scoring.review import Correction, ReviewLog
from ..tiles.results import TileResults
from .geojson import QUPATH_NAMES, _classification, _polygon, tile_id, write_geojson

REVIEW_SUFFIX = ".review.geojson"
#: key of the review record in each feature's properties, and of the file's header
REVIEW_KEY = "her2Review"
FORMAT_VERSION = 1
_CLASS_OF_QUPATH = {v: k for k, v in QUPATH_NAMES.items()}


class ReviewFileError(Her2Error, ValueError):
    """A review file could not be read."""


@dataclass(frozen=True)
class LabelledTile:
    """One reviewed tile as training data.

    row / col: grid cell; bbox0: (x0, y0, x1, y1) level-0 pixels of the slide; label: the
    reviewed class ("0".."3+", "non-tumour", ...); original: the model's class before review;
    changed: label differs from original; reviewer / time: who and when (ISO 8601).
    """

    row: int
    col: int
    bbox0: tuple[float, float, float, float]
    label: str
    original: str
    changed: bool
    reviewer: str = ""
    time: str = ""


def review_path(slide_path: str | os.PathLike) -> Path:
    """Where the review of a slide lives: ``<stem>.review.geojson`` beside it (a DICOM
    folder's review sits beside the folder)."""
    p = Path(slide_path)
    stem = p.name if p.is_dir() else p.stem
    return p.parent / f"{stem}{REVIEW_SUFFIX}"


def _box(results: TileResults, row: int, col: int) -> list[float]:
    th, tw = results.tile_size0
    oy, ox = results.origin0
    x0, y0 = ox + col * tw, oy + row * th
    x1, y1 = x0 + tw, y0 + th
    if results.image_shape0 is not None:
        x1, y1 = min(x1, results.image_shape0[1]), min(y1, results.image_shape0[0])
    return [float(x0), float(y0), float(x1), float(y1)]


def _tile_measurements(results: TileResults, where: dict[tuple[int, int], int],
                       c: Correction) -> dict[str, float]:
    meas = {"original label value": float(LABEL_VALUES[c.original]),
            "changed": float(c.changed)}
    i = where.get((c.row, c.col))
    if i is not None and results.readable[i]:
        for name, p in zip(results.classes, results.probs[i].tolist(), strict=True):
            if np.isfinite(p):
                meas[f"p({name})"] = round(float(p), 6)
    return meas


def review_to_geojson(log: ReviewLog, results: TileResults, *, name: str = "slide") -> dict[str, Any]:
    """QuPath FeatureCollection of the reviewed tiles of one slide."""
    where = {(int(r), int(c)): i for i, (r, c) in
             enumerate(zip(results.rows.tolist(), results.cols.tolist(), strict=True))}
    features = []
    for c in log:
        props = {
            "objectType": "tile",
            "classification": _classification(c.new),
            "isLocked": False,
            "measurements": _tile_measurements(results, where, c),
            REVIEW_KEY: {"row": c.row, "col": c.col, "original": c.original, "new": c.new,
                         "changed": c.changed, "time": c.time, "reviewer": c.reviewer},
        }
        features.append({"type": "Feature", "id": tile_id(name, c.row, c.col),
                         "geometry": _polygon(*_box(results, c.row, c.col)),
                         "properties": props})
    header = {"format_version": FORMAT_VERSION, "slide": name,
              "grid_shape": list(results.grid_shape), "tile_size0": list(results.tile_size0),
              "origin0": list(results.origin0), "classes": list(results.classes)}
    return {"type": "FeatureCollection", REVIEW_KEY: header, "features": features}


def save_review(path: str | os.PathLike, log: ReviewLog, results: TileResults, *,
                name: str = "slide") -> Path:
    """Write the review atomically (see :func:`review_path` for where it belongs)."""
    return write_geojson(path, review_to_geojson(log, results, name=name))


def _class_from(props: dict[str, Any], record: dict[str, Any], path: Path) -> str:
    cls = props.get("classification") or {}
    label = _CLASS_OF_QUPATH.get(cls.get("name", "")) or record.get("new")
    if label not in LABEL_VALUES:
        raise ReviewFileError(f"unknown tile class {cls.get('name')!r} in {path}")
    return label


def _original_from(props: dict[str, Any], record: dict[str, Any], label: str) -> str:
    if record.get("original") in LABEL_VALUES:
        return record["original"]
    value = (props.get("measurements") or {}).get("original label value")
    names = {v: k for k, v in LABEL_VALUES.items()}
    return names.get(int(value), label) if value is not None else label


def _tile_from(feature: dict[str, Any], path: Path) -> LabelledTile:
    props = feature.get("properties") or {}
    record = props.get(REVIEW_KEY) or {}
    label = _class_from(props, record, path)
    original = _original_from(props, record, label)
    try:
        ring = np.asarray(feature["geometry"]["coordinates"][0], float)
        bbox = (float(ring[:, 0].min()), float(ring[:, 1].min()), float(ring[:, 0].max()),
                float(ring[:, 1].max()))
    except (KeyError, IndexError, TypeError, ValueError):
        raise ReviewFileError(f"a tile has no polygon geometry in {path}") from None
    return LabelledTile(int(record.get("row", -1)), int(record.get("col", -1)), bbox, label,
                        original, label != original, str(record.get("reviewer", "")),
                        str(record.get("time", "")))


def read_review(path: str | os.PathLike) -> list[LabelledTile]:
    """The reviewed tiles of a review file (also after QuPath saved it again: class from the
    classification name, original from the measurements, box from the geometry).

    Raises :class:`ReviewFileError` with the reason and the file for anything unreadable.
    """
    p = Path(path)
    try:
        fc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as err:
        raise ReviewFileError(f"cannot read the review file ({err.strerror}): {p}") from err
    except ValueError as err:
        raise ReviewFileError(f"the review file is not JSON ({err}): {p}") from err
    features = fc.get("features") if isinstance(fc, dict) else None
    if not isinstance(features, list):
        raise ReviewFileError(f"the review file is no GeoJSON FeatureCollection: {p}")
    return [_tile_from(f, p) for f in features if isinstance(f, dict)]


def review_log_from(tiles: list[LabelledTile], reviewer: str = "") -> ReviewLog:
    """A :class:`ReviewLog` holding the tiles of a read review (to go on reviewing)."""
    log = ReviewLog(reviewer=reviewer)
    for t in tiles:
        if t.row >= 0 and t.col >= 0:
            log.record(t.row, t.col, t.original, t.label, reviewer=t.reviewer,
                       time=t.time or None)
    return log


def corrected_tiles_geojson(results: TileResults, label_image: np.ndarray, *,
                            name: str = "slide") -> dict[str, Any]:
    """The tile FeatureCollection of the results with the classes of ``label_image`` (the
    tile layer after hand edits): every tile keeps its probabilities and measurements, and a
    changed tile also records its original label value."""
    from .geojson import tiles_to_geojson

    fc = tiles_to_geojson(results, name=name)
    labels = np.asarray(label_image)
    if labels.shape != tuple(results.grid_shape):
        raise ValueError(f"label image {labels.shape} does not match the grid "
                         f"{tuple(results.grid_shape)}")
    shown = labels[results.rows, results.cols]
    model = results.tile_labels()
    names = {v: k for k, v in LABEL_VALUES.items()}
    for i in np.flatnonzero((shown != model) & (shown > 0)).tolist():
        props = fc["features"][i]["properties"]
        props["classification"] = _classification(names[int(shown[i])])
        props.setdefault("measurements", {})["original label value"] = float(model[i])
    return fc
