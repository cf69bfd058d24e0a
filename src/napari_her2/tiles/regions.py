"""Regions of a slide to score: polygons with holes in level-0 pixels, minus exclusions.

A :class:`Region` comes from QuPath GeoJSON annotations (:func:`read_geojson_region`), from
napari shapes (:func:`region_from_shapes`) or from TMA cores. Annotations classed
``Ignore*`` or ``Exclude`` (case-insensitive, as in QuPath) are subtracted from the others.

The tile grid is restricted in one place, :meth:`Region.restrict`: a tile is scored only
when its centre (the grid's own geometry) lies inside an included polygon, outside that
polygon's holes and outside every excluded polygon.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.path import Path as MplPath

from ..errors import Her2Error
from ..ihc.tissue import TissueMask
from .grid import TileGrid

log = logging.getLogger(__name__)

#: shape names / classes that are subtracted (compared lower-case, by prefix)
EXCLUDE_PREFIXES = ("ignore", "exclude")
#: QuPath object types that are results, not regions (a tile export is not a region)
NOT_REGIONS = ("tile", "detection", "cell")
#: longest side of the raster the region's area is measured on
AREA_RASTER = 1024
#: vertices of an ellipse drawn as a polygon
ELLIPSE_VERTICES = 64


class RegionError(Her2Error, ValueError):
    """A region is malformed, lies outside the slide or contains nothing to score."""


def is_exclusion(label: str | None) -> bool:
    """True for ``Ignore*`` / ``Exclude`` labels (any case): such shapes are subtracted."""
    return bool(label) and str(label).strip().lower().startswith(EXCLUDE_PREFIXES)


@dataclass(frozen=True, eq=False)
class Polygon:
    """One polygon in level-0 pixels: ``exterior`` (N, 2) (x, y) vertices and its holes."""

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()
    #: the class or name it was drawn with ("" when none)
    label: str = ""

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """(N,) True where points (N, 2) (x, y) lie inside the exterior and in no hole."""
        inside = MplPath(self.exterior).contains_points(xy)
        for hole in self.holes:
            inside &= ~MplPath(hole).contains_points(xy)
        return inside

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the exterior."""
        (x0, y0), (x1, y1) = self.exterior.min(axis=0), self.exterior.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)


@dataclass(frozen=True, eq=False)
class Region:
    """Included polygons minus excluded ones (level-0 pixels); ``source``: where it came
    from (a GeoJSON path, a Shapes layer name, a TMA core id)."""

    include: tuple[Polygon, ...]
    exclude: tuple[Polygon, ...] = ()
    source: str = ""

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """(N,) True where level-0 points (N, 2) (x, y) lie in the region."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        inside = np.zeros(len(xy), bool)
        for poly in self.include:
            inside |= poly.contains(xy)
        for poly in self.exclude:
            inside &= ~poly.contains(xy)
        return inside

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the included polygons."""
        b = np.array([p.bounds for p in self.include])
        return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())

    # ------------------------------------------------------------------ the grid
    def tile_mask(self, grid: TileGrid) -> np.ndarray:
        """(rows, cols) True for the tiles whose centre lies in the region."""
        rows, cols = np.indices(grid.shape).reshape(2, -1)
        yx = grid.geometry.centres0(rows, cols)
        return self.contains(yx[:, ::-1]).reshape(grid.shape)

    def restrict(self, grid: TileGrid) -> TileGrid:
        """The grid with only the tiles inside the region left to score.

        Raises :class:`RegionError` when no tile centre lies in the region."""
        inside = self.tile_mask(grid)
        if not inside.any():
            raise RegionError(f"{self.source or 'region'}: the region contains no tile centre "
                              f"(tiles are {grid.tile_size0[1]:.0f} level-0 px wide); draw it "
                              "larger or use smaller tiles")
        fraction = np.where(inside, grid.tissue_fraction, 0).astype(grid.tissue_fraction.dtype)
        return dataclasses.replace(grid, tissue_fraction=fraction)

    def check_on_slide(self, dimensions: tuple[int, int]) -> None:
        """Raise :class:`RegionError` when the region lies outside a slide of ``(h, w)``."""
        h, w = dimensions
        x0, y0, x1, y1 = self.bounds
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise RegionError(f"{self.source or 'region'}: the region ({x0:.0f}, {y0:.0f}) - "
                              f"({x1:.0f}, {y1:.0f}) lies outside the slide ({w} x {h} px); "
                              "coordinates must be level-0 pixels")
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            log.warning("%s: the region reaches past the slide edge; only its part on the "
                        "slide is scored", self.source or "region")

    # ------------------------------------------------------------------ area
    @functools.cached_property
    def areas_px(self) -> tuple[float, float]:
        """(area scored, area excluded from the included polygons) in level-0 px², measured
        on a raster of the region's bounding box (overlaps and holes counted once)."""
        x0, y0, x1, y1 = self.bounds
        step = max(x1 - x0, y1 - y0, 1.0) / AREA_RASTER
        shape = (int(math.ceil((y1 - y0) / step)) + 1, int(math.ceil((x1 - x0) / step)) + 1)
        ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
        pts = np.stack([x0 + (xs.ravel() + 0.5) * step, y0 + (ys.ravel() + 0.5) * step], axis=1)
        included = np.zeros(len(pts), bool)
        for poly in self.include:
            included |= poly.contains(pts)
        excluded = np.zeros(len(pts), bool)
        for poly in self.exclude:
            excluded |= poly.contains(pts)
        px2 = step * step
        return float((included & ~excluded).sum() * px2), float((included & excluded).sum() * px2)

    def summary(self, mpp: tuple[float, float] | None = None) -> dict[str, Any]:
        """The report's ``region``: source, shape counts, areas (mm² when ``mpp`` (x, y) is
        known, else level-0 px²) and bounds."""
        area, excluded = self.areas_px
        out: dict[str, Any] = {
            "source": self.source,
            "n_shapes": len(self.include),
            "n_excluded_shapes": len(self.exclude),
            "bounds_px": [round(v, 1) for v in self.bounds],
        }
        if mpp is None:
            out.update(area_px2=round(area), excluded_area_px2=round(excluded))
        else:
            um2 = mpp[0] * mpp[1] / 1e6
            out.update(area_mm2=round(area * um2, 4), excluded_area_mm2=round(excluded * um2, 4))
        return out

    def describe(self, mpp: tuple[float, float] | None = None) -> str:
        """One line for a panel or a log: area, shape count, excluded area."""
        s = self.summary(mpp)
        unit, key = ("mm²", "area_mm2") if mpp is not None else ("px²", "area_px2")
        text = f"{s[key]:.3g} {unit} in {s['n_shapes']} shape(s)"
        if self.exclude:
            text += f", {s['excluded_' + key]:.3g} {unit} excluded"
        return text

    # ------------------------------------------------------------------ tissue
    def crop_tissue(self, tissue: TissueMask) -> TissueMask:
        """The tissue mask and thumbnail cut to the region's bounding box, the mask limited
        to the region (what a region's stain adaptation and stain check look at)."""
        dy, dx = tissue.downsample
        x0, y0, x1, y1 = self.bounds
        h, w = tissue.mask.shape
        r0, r1 = max(0, int(y0 / dy)), min(h, int(math.ceil(y1 / dy)) + 1)
        c0, c1 = max(0, int(x0 / dx)), min(w, int(math.ceil(x1 / dx)) + 1)
        if r1 <= r0 or c1 <= c0:
            return dataclasses.replace(tissue, mask=np.zeros((0, 0), bool), thumbnail=None)
        ys, xs = np.mgrid[r0:r1, c0:c1]
        pts = np.stack([(xs.ravel() + 0.5) * dx, (ys.ravel() + 0.5) * dy], axis=1)
        mask = tissue.mask[r0:r1, c0:c1] & self.contains(pts).reshape(r1 - r0, c1 - c0)
        thumb = None if tissue.thumbnail is None else tissue.thumbnail[r0:r1, c0:c1]
        return dataclasses.replace(tissue, mask=mask, thumbnail=thumb)


# ---------------------------------------------------------------------- building regions
def _ring(coords: Any, where: str) -> np.ndarray:
    """A closed ring of (x, y) vertices as (N, 2) float64; RegionError when malformed."""
    try:
        ring = np.asarray(coords, np.float64)
    except (TypeError, ValueError):
        raise RegionError(f"{where}: coordinates are not numbers") from None
    if ring.ndim != 2 or ring.shape[1] < 2 or ring.shape[0] < 3:
        raise RegionError(f"{where}: a ring needs at least 3 (x, y) points")
    ring = ring[:, :2]
    if not np.isfinite(ring).all():
        raise RegionError(f"{where}: coordinates must be finite numbers")
    if _ring_area(ring) <= 0:
        raise RegionError(f"{where}: a ring encloses no area")
    return ring


def _ring_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def make_region(polygons: Iterable[tuple[Polygon, bool]], source: str = "") -> Region:
    """A Region from (polygon, is_excluded) pairs; RegionError when nothing is included."""
    include: list[Polygon] = []
    exclude: list[Polygon] = []
    for poly, excluded in polygons:
        (exclude if excluded else include).append(poly)
    if not include:
        what = "only Ignore/Exclude shapes" if exclude else "no polygon"
        raise RegionError(f"{source or 'region'}: {what}: nothing to score")
    return Region(tuple(include), tuple(exclude), source)


def ellipse_polygon(corners_yx: np.ndarray, n: int = ELLIPSE_VERTICES) -> np.ndarray:
    """(n, 2) (x, y) polygon of the ellipse inscribed in napari's 4-corner box (y, x)."""
    c = np.asarray(corners_yx, np.float64)[:, -2:]
    centre = c.mean(axis=0)
    a, b = (c[1] - c[0]) / 2, (c[3] - c[0]) / 2  # half-axes along the box's edges
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)[:, None]
    yx = centre + np.cos(t) * a + np.sin(t) * b
    return yx[:, ::-1]


def circle_polygon(cx: float, cy: float, radius: float, n: int = ELLIPSE_VERTICES) -> np.ndarray:
    """(n, 2) (x, y) polygon of a circle."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)


def region_from_shapes(data: Sequence[np.ndarray], shape_types: Sequence[str],
                       labels: Sequence[str | None], *, source: str = "") -> Region:
    """A Region from napari shapes whose vertices are already level-0 (y, x) pixels.

    Rectangles and polygons are used as drawn, ellipses as 64-gons; lines and paths enclose
    nothing and are skipped. ``labels``: each shape's name/class/text; ``Ignore*`` or
    ``Exclude*`` subtracts the shape."""
    pairs = []
    for i, (verts, kind, label) in enumerate(zip(data, shape_types, labels, strict=True)):
        where = f"{source or 'shapes'} shape {i}"
        if kind in ("line", "path"):
            log.info("%s: a %s encloses no area; skipped", where, kind)
            continue
        xy = ellipse_polygon(verts) if kind == "ellipse" else np.asarray(verts)[:, -2:][:, ::-1]
        pairs.append((Polygon(_ring(xy, where), label=str(label or "")), is_exclusion(label)))
    return make_region(pairs, source)


def merge_regions(regions: Sequence[Region], source: str = "") -> Region:
    """One region from several (their inclusions and exclusions pooled)."""
    return Region(tuple(p for r in regions for p in r.include),
                  tuple(p for r in regions for p in r.exclude), source)


def region_shapes(region: Region) -> tuple[list[np.ndarray], list[str]]:
    """The region as napari polygons: (y, x) level-0 vertices and a class per shape; holes
    become ``Exclude (hole)`` shapes, so that scoring the shapes gives the same region."""
    data, labels = [], []
    for poly in region.include:
        data.append(poly.exterior[:, ::-1].copy())
        labels.append(poly.label or "Region")
        for hole in poly.holes:
            data.append(hole[:, ::-1].copy())
            labels.append("Exclude (hole)")
    for poly in region.exclude:
        data.append(poly.exterior[:, ::-1].copy())
        labels.append(poly.label or "Exclude")
    return data, labels


def region_layer_kwargs(region: Region, scale: tuple[float, float] | None = None,
                        name: str = "region") -> tuple[list[np.ndarray], dict[str, Any]]:
    """(data, napari Shapes kwargs) of a region over a slide layer of ``scale`` (y, x) µm/px
    (None: the slide's µm/px is unknown, the layer is in pixels)."""
    data, labels = region_shapes(region)
    colours = ["#ff4040" if is_exclusion(lb) else "#ffd000" for lb in labels]
    kwargs = {
        "name": name, "shape_type": "polygon", "scale": scale or (1.0, 1.0),
        "units": ("um", "um") if scale else ("pixel", "pixel"),
        "features": {"class": labels}, "text": {"string": "{class}", "color": "white"},
        "edge_color": colours, "face_color": "transparent",
        "edge_width": max(2.0, max(region.bounds[2] - region.bounds[0],
                                   region.bounds[3] - region.bounds[1]) / 400),
        "metadata": {"napari_her2": {"region_source": region.source}},
    }
    return data, kwargs


def roi_path_for(slide: str | os.PathLike, roi_dir: str | os.PathLike | None = None) -> Path | None:
    """The region file of a slide in a batch: ``<stem>.geojson`` in ``roi_dir`` (required
    there: RegionError when missing), else beside the slide (optional: None when absent)."""
    p = Path(slide)
    stem = p.stem if p.suffix and not p.is_dir() else p.name
    if roi_dir is not None:
        path = Path(roi_dir) / f"{stem}.geojson"
        if not path.is_file():
            raise RegionError(f"{path}: no region file for {p.name} in the --roi-dir folder")
        return path
    beside = p.parent / f"{stem}.geojson"
    return beside if beside.is_file() else None


def as_region(region: Region | str | os.PathLike | None) -> Region | None:
    """A Region from a Region, a GeoJSON path or None."""
    if region is None or isinstance(region, Region):
        return region
    return read_geojson_region(region)


# ---------------------------------------------------------------------- QuPath GeoJSON
def read_geojson_region(path: str | os.PathLike) -> Region:
    """A Region from a QuPath GeoJSON file (level-0 pixel coordinates).

    Feature, FeatureCollection or a list of features; Polygon and MultiPolygon geometries
    (holes respected); ``properties.classification.name`` ``Ignore*`` / ``Exclude``
    subtracts. Anything malformed raises :class:`RegionError` naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RegionError(f"{path}: cannot read the region file ({err.strerror or err})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RegionError(f"{path}: not valid GeoJSON ({err})") from None
    return geojson_region(data, source=str(path))


def geojson_region(data: Any, source: str = "GeoJSON") -> Region:
    """A Region from parsed GeoJSON (see :func:`read_geojson_region`)."""
    pairs: list[tuple[Polygon, bool]] = []
    skipped = 0
    for i, feature in enumerate(_features(data, source)):
        where = f"{source}: feature {i}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise RegionError(f"{where}: not a GeoJSON Feature")
        props = feature.get("properties")
        if isinstance(props, dict) and props.get("objectType") in NOT_REGIONS:
            skipped += 1
            continue
        label = _class_name(props) or ""
        pairs.extend((dataclasses.replace(poly, label=label), is_exclusion(label))
                     for poly in _polygons(feature.get("geometry"), where))
    if skipped and not pairs:
        raise RegionError(f"{source}: only tiles or detections ({skipped}), no annotation "
                          "to score inside")
    return make_region(pairs, source)


def _features(data: Any, source: str) -> list[Any]:
    if isinstance(data, list):
        return data
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "FeatureCollection" and isinstance(data.get("features"), list):
        return data["features"]
    if kind == "Feature":
        return [data]
    raise RegionError(f"{source}: expected a GeoJSON Feature or FeatureCollection, "
                      f"found {kind or type(data).__name__}")


def _class_name(props: Any) -> str | None:
    """QuPath's ``classification.name`` (older exports: a plain string or ``name``)."""
    if not isinstance(props, dict):
        return None
    cls = props.get("classification")
    if isinstance(cls, dict):
        return cls.get("name")
    return cls if isinstance(cls, str) else None


def _polygons(geom: Any, where: str) -> list[Polygon]:
    """Polygons of a geometry; points and lines enclose nothing and are skipped."""
    if not isinstance(geom, dict) or "type" not in geom:
        raise RegionError(f"{where}: the feature has no geometry")
    kind, coords = geom["type"], geom.get("coordinates")
    if kind == "GeometryCollection":
        return [p for g in geom.get("geometries") or [] for p in _polygons(g, where)]
    if kind not in ("Polygon", "MultiPolygon"):
        log.info("%s: a %s encloses no area; skipped", where, kind)
        return []
    if not isinstance(coords, list) or not coords:
        raise RegionError(f"{where}: {kind} without coordinates")
    parts = [coords] if kind == "Polygon" else coords
    out = []
    for rings in parts:
        if not isinstance(rings, list) or not rings:
            raise RegionError(f"{where}: {kind} without rings")
        out.append(Polygon(_ring(rings[0], where), tuple(_ring(r, where) for r in rings[1:])))
    return out


__all__ = [
    "Polygon", "Region", "RegionError", "as_region", "circle_polygon", "ellipse_polygon",
    "geojson_region", "is_exclusion", "make_region", "merge_regions", "read_geojson_region",
    "region_from_shapes", "region_layer_kwargs", "region_shapes", "roi_path_for",
]
