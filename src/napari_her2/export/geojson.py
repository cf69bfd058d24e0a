"""Tiles as QuPath GeoJSON, and a validator of QuPath's dialect.

QuPath's GeoJSON dialect (what its importer accepts and its exporter writes): a
FeatureCollection of Features with a UUID ``id``, a geometry in level-0 pixel coordinates,
``properties.objectType`` ("tile", "detection", "annotation", "cell"), a ``classification``
with a ``name`` and an RGB ``color`` (QuPath rejects a classification without a colour), a
flat ``measurements`` dict name -> number (no NaN), and ``isLocked``.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import ARTEFACT, CLASS_COLORS, LABEL_NAMES, NON_TUMOUR, UNREADABLE
from ..tiles.grid import TileGeometry, TileRaster
from ..tiles.results import TileResults
from .atomic import write_json

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



def write_geojson(path: str | os.PathLike, fc: dict[str, Any]) -> Path:
    """Write a GeoJSON FeatureCollection atomically (compact)."""
    return write_json(path, fc, check_circular=False)




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


def _coordinates(boxes: np.ndarray) -> Sequence[Sequence[float]]:
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
    all_finite: list[bool] = np.all(finite, axis=1).tolist()
    rows = values.tolist()
    out: list[dict[str, float]] = []
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
    iy, ix = (float(v) for v in image_scale[-2:])
    if translate is None:
        translate = [(float(v) - i) / 2 for v, i in zip(scale[-2:], (iy, ix), strict=True)]
    geometry = TileGeometry.from_layer(labels.shape, scale, translate, (iy, ix),
                                       image_shape0=None if image_shape0 is None
                                       else (int(image_shape0[0]), int(image_shape0[1])))
    rows, cols = np.nonzero(labels)
    boxes = _coordinates(geometry.boxes0(rows, cols))
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


def layer_geojson(label_image: np.ndarray, metadata: dict[str, Any], results: TileResults | None = None,
                  *, scale=None, translate=None) -> dict[str, Any]:
    """FeatureCollection of a napari tile layer (its data, metadata, scale and translate).

    When the layer still shows exactly what the model said, the tiles carry the model's
    probabilities and features; after a hand edit they carry the edited classes only. The
    layer's raster may hold k x k pixels per tile (``subpixels`` in the metadata): each tile
    then takes the most common value of its block, and ``scale`` / ``translate`` (the
    layer's own) are turned into those of one pixel per tile.
    """
    info = metadata.get("napari_her2", {})
    name = Path(info.get("slide", "slide")).stem
    raster = TileRaster.of(np.shape(label_image), int(info.get("subpixels", 1)))
    labels = raster.per_tile(np.asarray(label_image))
    if results is not None and labels.shape == results.grid_shape and np.array_equal(
        labels, results.label_image()
    ):
        return tiles_to_geojson(results, name=name)
    size0 = info.get("tile_size0")
    image_scale = info.get("image_scale", (1.0, 1.0))
    image_translate = np.asarray(info.get("image_translate", (0.0, 0.0)), float)
    if scale is None:
        scale = np.asarray(size0, float) * np.asarray(image_scale, float) / raster.k
    if translate is None:
        translate = (np.asarray(scale, float) - np.asarray(image_scale, float)) / 2 + image_translate
    scale, translate = raster.tile_transform(scale, translate)
    return labels_to_geojson(labels, scale, np.asarray(translate, float) - image_translate,
                             image_scale=image_scale, name=name,
                             image_shape0=info.get("image_shape0"))
