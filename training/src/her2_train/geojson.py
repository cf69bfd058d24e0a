"""Tile labels from QuPath GeoJSON: classified tiles or regions drawn on a slide.

A file holds a ``Feature`` or a ``FeatureCollection`` whose features have a ``Polygon`` or
``MultiPolygon`` geometry in level-0 pixel coordinates (x, y) and a HER2 score in
``properties.classification.name`` (``0``, ``1+``, ``2+``, ``3+``). A tile takes the class
of the annotation containing its centre; where annotations overlap, the later one in the
file wins (QuPath draws later objects on top). Tiles outside every annotation get no label.
A review saved by the napari-her2 widget (``<stem>.review.geojson``: its tiles with the
pathologist's classes) is read the same way; its non-tumour, artefact and unreadable tiles
carry no score and are left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.path import Path as MplPath
from napari_her2.export import QUPATH_NAMES

from .errors import DatasetError, LabelError
from .labels import NO_LABEL, parse_score

#: QuPath classes napari-her2 writes for tiles that carry no HER2 score (non-tumour,
#: artefact, unreadable): such tiles of a saved review are left out, not errors
NOT_SCORED = frozenset(v for k, v in QUPATH_NAMES.items() if k not in ("0", "1+", "2+", "3+"))


@dataclass(frozen=True)
class Region:
    """One classified polygon: exterior ring and holes as (M, 2) x/y arrays."""

    label: int
    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """(N,) True for the (N, 2) x/y points inside the polygon and outside its holes."""
        inside = MplPath(self.exterior).contains_points(xy)
        for hole in self.holes:
            inside &= ~MplPath(hole).contains_points(xy)
        return inside


def _polygons(geometry: dict) -> list[list[list[list[float]]]]:
    kind = geometry.get("type")
    if kind == "Polygon":
        return [geometry["coordinates"]]
    if kind == "MultiPolygon":
        return list(geometry["coordinates"])
    return []  # points, lines: no area, no tiles


def _label_of(feature: dict) -> int:
    props = feature.get("properties") or {}
    cls = props.get("classification") or {}
    name = cls.get("name") if isinstance(cls, dict) else None
    if name is None:
        raise LabelError("a feature has no properties.classification.name")
    if name in NOT_SCORED:
        return NO_LABEL
    return parse_score(name)


def read_regions(path: str | Path) -> list[Region]:
    """The classified polygons of a QuPath GeoJSON file, in file order."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: not a readable GeoJSON file ({err})") from None
    features = data.get("features") if data.get("type") == "FeatureCollection" else [data]
    if not isinstance(features, list):
        raise DatasetError(f"{path}: expected a Feature or a FeatureCollection")
    regions = []
    for feature in features:
        try:
            label = _label_of(feature)
        except LabelError as err:
            raise LabelError(f"{path}: {err}") from None
        if label == NO_LABEL:
            continue
        for rings in _polygons(feature.get("geometry") or {}):
            arrays = [np.asarray(r, float)[:, :2] for r in rings if len(r) >= 3]
            if arrays:
                regions.append(Region(label, arrays[0], tuple(arrays[1:])))
    return regions


def label_points(regions: list[Region], xy: np.ndarray) -> np.ndarray:
    """(N,) label of each (x, y) point: the last region containing it, else NO_LABEL."""
    labels = np.full(len(xy), NO_LABEL, np.int64)
    for region in regions:
        labels[region.contains(xy)] = region.label
    return labels


def tile_centres(rows: np.ndarray, cols: np.ndarray,
                 tile_size0: tuple[float, float]) -> np.ndarray:
    """(N, 2) level-0 x/y centres of grid tiles."""
    return np.stack([(cols + 0.5) * tile_size0[1], (rows + 0.5) * tile_size0[0]], axis=1)
