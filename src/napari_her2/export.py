"""Exports: tiles as QuPath GeoJSON, tiles as CSV, the slide report as JSON.

Every file is written atomically: to a temporary file in the same folder, flushed and fsynced,
then renamed over the target with ``os.replace``. A crash or an error mid-write leaves the old
file (or none) and no temporary file behind, and raises :class:`~napari_her2.errors.OutputError`
with a one-line message naming the path.

QuPath's GeoJSON dialect (what its importer accepts and its exporter writes): a
FeatureCollection of Features with a UUID ``id``, a geometry in level-0 pixel coordinates,
``properties.objectType`` ("tile", "detection", "annotation", "cell"), a ``classification``
with a ``name`` and an RGB ``color`` (QuPath rejects a classification without a colour), a
flat ``measurements`` dict name -> number (no NaN), and ``isLocked``.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from .classes import ARTEFACT, CLASS_COLORS, LABEL_NAMES, NON_TUMOUR, UNREADABLE
from .errors import OutputError
from .results import TileResults

logger = logging.getLogger(__name__)

#: QuPath classification name of each canonical tile outcome
QUPATH_NAMES: dict[str, str] = {
    "0": "HER2 0",
    "1+": "HER2 1+",
    "2+": "HER2 2+",
    "3+": "HER2 3+",
    NON_TUMOUR: "Non-tumour",
    ARTEFACT: "Artefact",
    UNREADABLE: "Unreadable",
}
OBJECT_TYPES = ("tile", "detection", "annotation", "cell")
#: namespace of the deterministic feature ids (uuid5 of "<name>/<row>/<col>")
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://napari-hub.org/plugins/napari-her2")
_NS_BYTES = ID_NAMESPACE.bytes
#: decimals kept in GeoJSON measurements (probabilities and OD-scale features need no more)
MEASUREMENT_DECIMALS = 6

_NEW_FILE_MODE = 0o644


# --------------------------------------------------------------------------- atomic writing


def ensure_out_dir(path: str | os.PathLike) -> Path:
    """Create the output folder if needed; OutputError when it cannot be made or written."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{out}: cannot create the output folder ({_reason(err)})") from err
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: the output folder is not writable")
    return out


def _reason(err: BaseException) -> str:
    """A one-line reason for an error."""
    text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return " ".join((text or type(err).__name__).split())


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, newline: str | None = None) -> Iterator[IO[str]]:
    """Open a text file that replaces ``path`` only when the ``with`` block succeeds."""
    target = Path(path)
    mode = target.stat().st_mode & 0o777 if target.is_file() else _NEW_FILE_MODE
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise OutputError(f"{target}: cannot write to {target.parent} ({_reason(err)})") from err
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            os.fchmod(f.fileno(), mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except Exception as err:
        _remove(tmp)
        raise OutputError(f"{target}: not written ({_reason(err)})") from err
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically; returns its path."""
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = None,
               check_circular: bool = True) -> Path:
    """Write JSON atomically (no NaN or infinity: they are not JSON).

    ``check_circular=False`` skips the encoder's cycle bookkeeping (about 20% faster on large
    GeoJSON); a cyclic structure then fails with RecursionError, reported as OutputError.
    """
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=indent, allow_nan=False, separators=_separators(indent),
                           check_circular=check_circular))
        if indent is not None:
            f.write("\n")
    return Path(path)


def _separators(indent: int | None) -> tuple[str, str]:
    return (",", ": ") if indent is not None else (",", ":")


def write_report_json(path: str | os.PathLike, report: dict[str, Any]) -> Path:
    """Write the slide report (indented, human-readable) atomically."""
    return write_json(path, report, indent=2)


def write_geojson(path: str | os.PathLike, fc: dict[str, Any]) -> Path:
    """Write a GeoJSON FeatureCollection atomically (compact)."""
    return write_json(path, fc, check_circular=False)


# --------------------------------------------------------------------------- GeoJSON


def tile_id(name: str, row: int, col: int) -> str:
    """Deterministic UUID of a tile: the same slide name and grid cell give the same id.

    Equal to ``str(uuid.uuid5(ID_NAMESPACE, f"{name}/{row}/{col}"))`` (RFC 4122 version 5),
    computed without building UUID objects, which costs seconds on 100,000 tiles.
    """
    digest = bytearray(hashlib.sha1(_NS_BYTES + f"{name}/{row}/{col}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _coordinates(boxes: np.ndarray) -> list[list[float]] | list[list[int]]:
    """Boxes as Python numbers: integers when every coordinate is whole (shorter, faster JSON)."""
    if np.all(np.isfinite(boxes)) and np.array_equal(boxes, np.round(boxes)):
        return boxes.astype(np.int64).tolist()
    return boxes.tolist()


def _polygon(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Polygon", "coordinates": [ring]}


def _classification(outcome: str) -> dict[str, Any]:
    return {"name": QUPATH_NAMES[outcome], "color": list(CLASS_COLORS[outcome])}


def _feature(fid: str, box: Sequence[float], outcome: str, object_type: str,
             measurements: dict[str, float] | None) -> dict[str, Any]:
    props: dict[str, Any] = {
        "objectType": object_type,
        "classification": _classification(outcome),
        "isLocked": False,
    }
    if measurements is not None:
        props["measurements"] = measurements
    return {"type": "Feature", "id": fid, "geometry": _polygon(*box), "properties": props}


def _measurements(results: TileResults) -> list[dict[str, float]]:
    """Flat measurement dicts: p(class) and features of readable tiles, nothing non-finite."""
    names = [f"p({c})" for c in results.classes] + list(results.feature_names)
    values = np.concatenate([results.probs, results.features], axis=1).astype(np.float64)
    values = np.round(values, MEASUREMENT_DECIMALS)
    finite = np.isfinite(values)
    all_finite = finite.all(axis=1).tolist()
    rows = values.tolist()
    out = []
    for i, ok in enumerate(results.readable.tolist()):
        if not ok:
            out.append({})
        elif all_finite[i]:
            out.append(dict(zip(names, rows[i], strict=True)))
        else:
            out.append({n: v for n, v, f in zip(names, rows[i], finite[i], strict=True) if f})
    return out


def tiles_to_geojson(results: TileResults, *, object_type: str = "tile",
                     name: str = "slide") -> dict[str, Any]:
    """QuPath FeatureCollection with one square Feature per scored tile.

    Geometry is in level-0 pixels; ids are uuid5 of ``name`` and the tile's grid cell.
    """
    _check_object_type(object_type)
    with _no_gc():
        boxes = _coordinates(results.bboxes0())
        outcomes = results.tile_outcomes()
        meas = _measurements(results)
        features = [
            _feature(tile_id(name, r, c), box, outcome, object_type, m)
            for r, c, box, outcome, m in zip(results.rows.tolist(), results.cols.tolist(),
                                             boxes, outcomes, meas, strict=True)
        ]
    return {"type": "FeatureCollection", "features": features}


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small dicts and lists.

    The objects built here hold no reference cycles; without the pause, repeated full
    collections over the growing heap take most of the time on 100,000 tiles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_object_type(object_type: str) -> None:
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"object_type must be one of {', '.join(OBJECT_TYPES)}")


def labels_to_geojson(label_image: np.ndarray, scale: Sequence[float],
                      translate: Sequence[float] | None = None, *,
                      image_scale: Sequence[float] = (1.0, 1.0), object_type: str = "tile",
                      name: str = "slide",
                      image_shape0: Sequence[int] | None = None) -> dict[str, Any]:
    """QuPath FeatureCollection from a (hand-edited) napari tile Labels layer.

    ``scale`` and ``translate`` are the Labels layer's (y, x) world transform; one label pixel
    is one tile. ``image_scale`` is the slide image layer's scale (world units per level-0
    pixel). napari centres pixels on integer coordinates, so a tile pixel at (r, c) covers
    world [translate + (r - 1/2) scale, translate + (r + 1/2) scale] and level-0 pixel edges
    lie at world / image_scale + 1/2. With the default translate (scale - image_scale) / 2
    tile (r, c) covers level-0 [c * S, (c + 1) * S). ``image_shape0`` (height, width of level
    0), when given, clips the boxes of edge tiles to the image.
    """
    _check_object_type(object_type)
    labels = np.asarray(label_image)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2-D tile label image, got shape {labels.shape}")
    sy, sx = (float(v) for v in scale[-2:])
    iy, ix = (float(v) for v in image_scale[-2:])
    ty, tx = ((sy - iy) / 2, (sx - ix) / 2) if translate is None else (float(v) for v in
                                                                         translate[-2:])
    rows, cols = np.nonzero(labels)
    y0 = (ty + (rows - 0.5) * sy) / iy + 0.5
    x0 = (tx + (cols - 0.5) * sx) / ix + 0.5
    boxes = np.stack([x0, y0, x0 + sx / ix, y0 + sy / iy], axis=1)
    if image_shape0 is not None:  # edge tiles reach past the image: clip them to it
        boxes[:, 2] = np.minimum(boxes[:, 2], image_shape0[1])
        boxes[:, 3] = np.minimum(boxes[:, 3], image_shape0[0])
    boxes = _coordinates(boxes)
    values = labels[rows, cols].tolist()
    unknown = sorted(set(values) - set(LABEL_NAMES))
    if unknown:
        raise ValueError(f"label image has values {unknown} that are no tile class")
    with _no_gc():
        features = [
            _feature(tile_id(name, r, c), box, LABEL_NAMES[v], object_type, None)
            for r, c, box, v in zip(rows.tolist(), cols.tolist(), boxes, values, strict=True)
        ]
    return {"type": "FeatureCollection", "features": features}


# --------------------------------------------------------------------------- validation


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _ring_problems(ring: Any) -> list[str]:
    if not isinstance(ring, list) or len(ring) < 4:
        return ["a polygon ring needs at least 4 positions"]
    if any(not isinstance(p, list) or len(p) != 2 or not all(_is_number(v) for v in p)
           for p in ring):
        return ["ring positions must be [x, y] pairs of finite numbers"]
    if ring[0] != ring[-1]:
        return ["polygon ring is not closed (first position != last)"]
    return []


def _geometry_problems(geom: Any) -> list[str]:
    if not isinstance(geom, dict):
        return ["geometry missing"]
    kind = geom.get("type")
    coords = geom.get("coordinates")
    if kind == "Polygon":
        polys = [coords]
    elif kind == "MultiPolygon":
        polys = coords if isinstance(coords, list) else [None]
    else:
        return [f"geometry type {kind!r} is not Polygon or MultiPolygon"]
    problems: list[str] = []
    for poly in polys:
        if not isinstance(poly, list) or not poly:
            return ["polygon without rings"]
        for ring in poly:
            problems += _ring_problems(ring)
    return problems


def _classification_problems(cls: Any) -> list[str]:
    if cls is None:
        return []
    if not isinstance(cls, dict) or not isinstance(cls.get("name"), str) or not cls["name"]:
        return ["classification needs a non-empty name"]
    color = cls.get("color")
    if (not isinstance(color, list) or len(color) != 3
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255
                       for c in color)):
        return [f"classification {cls['name']!r} needs a color [r, g, b] of integers 0-255"]
    return []


def _properties_problems(props: Any) -> list[str]:
    if not isinstance(props, dict):
        return ["properties missing"]
    problems = []
    if props.get("objectType") not in OBJECT_TYPES:
        problems.append(f"objectType {props.get('objectType')!r} is not one of "
                        f"{', '.join(OBJECT_TYPES)}")
    problems += _classification_problems(props.get("classification"))
    meas = props.get("measurements", {})
    if not isinstance(meas, dict):
        problems.append("measurements must be a flat dict name -> number")
    elif not all(isinstance(k, str) and _is_number(v) for k, v in meas.items()):
        problems.append("measurements must map names to finite numbers (no NaN, no nesting)")
    if "isLocked" in props and not isinstance(props["isLocked"], bool):
        problems.append("isLocked must be true or false")
    return problems


def _feature_problems(feat: Any) -> list[str]:
    if not isinstance(feat, dict) or feat.get("type") != "Feature":
        return ["not a GeoJSON Feature"]
    problems = []
    try:
        uuid.UUID(str(feat.get("id")))
    except ValueError:
        problems.append(f"id {feat.get('id')!r} is not a UUID")
    return problems + _geometry_problems(feat.get("geometry")) + _properties_problems(
        feat.get("properties"))


def validate_qupath_geojson(fc: Any) -> list[str]:
    """Problems that would stop QuPath importing ``fc`` (empty list: it is fine)."""
    if not isinstance(fc, dict) or fc.get("type") != "FeatureCollection":
        return ["not a GeoJSON FeatureCollection"]
    features = fc.get("features")
    if not isinstance(features, list):
        return ["FeatureCollection without a features list"]
    problems = [f"feature {i}: {p}" for i, feat in enumerate(features)
                for p in _feature_problems(feat)]
    ids = [f.get("id") for f in features if isinstance(f, dict)]
    if len(set(map(str, ids))) != len(ids):
        problems.append("feature ids are not unique")
    return problems


# --------------------------------------------------------------------------- CSV


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
