"""Nuclei of a stack of tiles, one object each, measured and judged epithelial or not.

Used by :mod:`.cells` (each nucleus seeds one cell); works on a grid of about 1 µm per pixel
(``NucleusParams.grid_um``, the grid :mod:`.tumour` finds nuclei on), every size in microns.

How it decides:

1. **haematoxylin nuclei**: the candidate regions of :func:`.tumour.nucleus_regions`
   (smoothed haematoxylin OD above an absolute floor *and* above its local background, grown
   from a core) and each cut at its own half-maximum contour (``edge_fraction``: the
   smoothing spreads a dark nucleus down to the absolute floor, so that a small dark stromal
   nucleus would measure as large as a pale carcinoma nucleus), holes filled (vesicular
   nuclei are darker at the rim), keeping only pixels
   whose haematoxylin is at least ``dab_ratio`` of their DAB: strong DAB leaks a little into
   the haematoxylin plane of a colour deconvolution, and without this rule the membranes of
   a 3+ carcinoma would read as nuclei. Where DAB is stained (``stained_od``) a pixel needs
   at least as much haematoxylin as DAB: a nucleus shows blue inside a stained cell, and
   a dark spot of brown cytoplasm or secretion is not a nucleus. A cell outlined by a
   stained membrane is found by its unstained interior instead (step 2);
2. **unstained nuclei inside stained cells**: where the membrane stain is at least moderate
   the nucleus of a tumour cell often takes almost no haematoxylin and shows only as a hole
   in the brown. On DAB as the ×20 view shows it (``d_view``: walls a viewer sees at ×20,
   ``CellParams.outline_um``), pixels at least ``hole_contrast_od`` below the wall that
   bounds them across ``hole_directions`` of four directions within ``hole_um`` (a black
   top-hat by line closings: interiors up to a cell's width that DAB closes around; gland
   lumens and stroma wider than that stay open, and so do corridors between parallel walls
   and pale bays that open onto a wider pale area) and in the lower half between that wall
   and the lowest DAB around are taken as cell interiors. They join the haematoxylin nuclei
   they touch (a blue nucleus and the pale cytoplasm around it inside a stained membrane are
   one interior). An object mostly made of such pixels is flagged ``unstained``; one whose edge
   is mostly such pixels is ``closed``: it already reaches its membrane (:mod:`.cells` grows
   it less). Its area is then the cell's interior (nucleus and pale cytoplasm), not the
   nucleus alone;
3. **touching nuclei split**: a distance transform of the union, markers at its local maxima
   at least ``split_um`` apart (a plateau is one marker) and at least ``min_half_width_um``
   deep, and a watershed of the negated distance from those markers inside the mask (the
   classical distance-transform split: the cut follows the neck between two round nuclei).
   Pieces smaller than ``min_area_um2`` are dropped;
4. **shape** from the second moments of each object: area, major and minor axis of the
   moment ellipse, eccentricity, and ``fill`` = area over the ellipse's area (a cheap stand-in
   for solidity: convex nuclei are close to 1, lobed or branched objects far below);
5. **epithelial (plump) nuclei**: the criteria of :class:`.tumour.TumourParams` (area between
   ``min_area_um2`` and ``max_area_um2``, width >= ``min_width_um``, fill >= ``min_fill``)
   and an aspect ratio of at most ``max_aspect`` (spindle fibroblast and smooth-muscle nuclei
   are 4-10 times longer than wide, carcinoma nuclei 1-3 times);
6. **cohesive clusters**: an epithelial nucleus with at least ``cluster_min`` other
   epithelial nuclei within ``cluster_radius_um`` (a neighbour count, as DBSCAN's core points,
   with :class:`scipy.spatial.cKDTree`). Lymphocytes are too small, fibroblasts too thin, fat
   has no nuclei, and scattered single cells have no cohesive neighbours: none is tumour;
7. **the clusters' other cells** (:func:`cluster_members`): a cell whose nucleus is convex and
   not spindle-shaped (``min_fill``, ``max_aspect``), whatever its size below a clump's
   (``max_area_um2``), with at least ``member_min`` tumour cells of step 6 within
   ``member_um`` (one carcinoma cell's width) lies inside a cluster and is one of its cells.
   A pale vesicular carcinoma nucleus, whose chromatin specks set its half-maximum contour,
   measures as small as a stromal nucleus; in the middle of a nest it touches several tumour
   cells, where a stromal cell at the nest's rim touches one. A cell is never tumour by this
   step alone: a cluster is found first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.segmentation import watershed

from .tumour import TumourParams, nucleus_contrast, nucleus_regions, plane_structure

__all__ = ["NucleusParams", "Nuclei", "find_nuclei", "epithelial", "cohesive", "convex",
           "cluster_members"]


@dataclass(frozen=True)
class NucleusParams:
    """Thresholds of nucleus detection, splitting and the tumour-cell criteria (µm, OD)."""

    #: detection thresholds and the epithelial (plump) criteria, as ``tumour.py``'s except the
    #: smallest epithelial nucleus: 16 µm² on the half-maximum contour (``edge_fraction``),
    #: where ``tumour.py`` takes 25 µm² on the whole detected region. On that contour a 5 µm
    #: disc measures 13 µm² and a 6 µm disc 22 µm² (1 µm grid), so 16 µm² is a nucleus about
    #: 5.5 µm across: small lymphocytes and the narrow nuclei of stroma fall under it. Chosen
    #: on the annotated TMA cores (tumour-cell precision 0.97 against 0.93 at 10 µm², recall
    #: 0.40 against 0.47), checked on the BCI regions (docs/validation.md)
    tumour: TumourParams = field(default_factory=lambda: TumourParams(min_area_um2=16.0))
    #: a nucleus is measured (area, width, shape) where its smoothed haematoxylin stays above
    #: this fraction of its own peak over the background: 0.5, the half-maximum contour, where
    #: the edge of a blurred object lies. Its detected region reaches down to an absolute
    #: floor instead (``TumourParams.nucleus_contrast_od / 2``), to which the smoothing
    #: spreads a dark nucleus by up to 2 µm all round: measured there, the small dark nuclei
    #: of lymphocytes and cellular stroma are as large as pale carcinoma nuclei. 0 measures
    #: the whole region
    edge_fraction: float = 0.5
    #: side of the grid pixel nuclei are segmented on (µm): the grid ``tumour.py`` uses at
    #: 0.5 µm/px; a 6 µm lymphocyte still spans 6 pixels
    grid_um: float = 1.0
    #: a nucleus pixel has at least this many times as much haematoxylin as DAB. DAB leaks
    #: into the haematoxylin plane by about the sine of the angle between the true and the
    #: assumed DAB vector (the scorer accepts up to 20 degrees: sin 20 = 0.34); a pixel with
    #: less haematoxylin than half its DAB is explained by that leak, not by a nucleus
    dab_ratio: float = 0.5
    #: DAB OD from which a nucleus pixel needs at least as much haematoxylin as DAB: weak
    #: staining (``DabMembraneParams.weak_od``). A nucleus inside a stained cell shows blue
    #: (HER2 stains the membrane, not the nucleus); where brown as strong as the counterstain
    #: covers a spot, it is a dark patch of stained cytoplasm or secretion, or a nucleus
    #: masked by it, which a viewer cannot tell apart. A cell outlined by its membrane is still
    #: found by its unstained interior (step 2). On the annotated regions this took the
    #: tumour cells of 00249's normal ducts from 88 to 42 and the BCI precision from 0.89 to
    #: 0.93, at a recall of 0.36 (0.38 without it; docs/validation.md)
    stained_od: float = 0.2
    #: widest unstained cell interior that DAB around it closes (µm): carcinoma cells are
    #: 10-20 µm across, their interiors inside the membrane up to about 12 µm
    hole_um: float = 12.0
    #: how far DAB drops inside such an interior (OD): the contrast a viewer needs to see a
    #: membrane at all (``CellParams.visible_od``)
    hole_contrast_od: float = 0.1
    #: fewest of four directions (0, 45, 90, 135 degrees) across which DAB walls within
    #: ``hole_um`` bound an interior. Two: a membrane may have gaps, each of which opens the
    #: interior in a direction, but a corridor or a bay of pale secretion is bounded across one
    #: direction only. On the annotated regions (docs/validation.md, outlines at ×20) the
    #: normal ducts of 00249 held 34 tumour cells with one direction and 10 with two, and the
    #: BCI tumour-cell precision rose from 0.96 to 0.97, its recall fell from 0.46 to 0.29;
    #: three directions kept a recall of 0.12: real membranes have gaps
    hole_directions: int = 2
    #: closest centres of two touching nuclei that are split apart (µm): the radius of the
    #: smallest nucleus (a 6 µm lymphocyte)
    split_um: float = 3.0
    #: thinnest object kept: half its width (µm), so objects under 2 µm wide are not nuclei
    min_half_width_um: float = 1.0
    #: smallest object kept (µm²), measured on the half-maximum contour: a 2.8 µm disc, below
    #: any nucleus (fragments, specks); stromal nuclei of the shared images measure about
    #: 12 µm² (median) on it
    min_area_um2: float = 6.0
    #: longest epithelial nucleus relative to its width (spindle nuclei are 4-10x)
    max_aspect: float = 4.0
    #: radius (µm) within which a tumour nucleus has cohesive neighbours: about 2.5 diameters
    #: of a 10 µm carcinoma cell, so a compact group of five cells lies within it
    cluster_radius_um: float = 25.0
    #: fewest other epithelial nuclei within that radius: with the cell itself, the cluster
    #: of five tumour cells that the gastric guideline counts in biopsies
    cluster_min: int = 4
    #: how near (µm, centre to centre) a cell lies to the tumour cells it touches: about one
    #: carcinoma cell's width (10-12 µm), two 5 µm cell expansions round small nuclei
    member_um: float = 12.0
    #: fewest tumour cells a cluster's other cell touches: two, so that it lies inside the
    #: cluster; a stromal cell at a nest's rim touches one. On the annotated regions
    #: (docs/validation.md) this raised the tumour-cell recall from 0.26 to 0.37 (BCI) and
    #: 0.40 to 0.55 (TMA) at a precision of 0.91 and 0.97 (0.90 and 0.97 before); one
    #: tumour cell gave 0.43 and 0.64 at 0.90 and 0.96, with twice the stroma counted
    member_min: int = 2

    def __post_init__(self) -> None:
        sizes = (self.grid_um, self.hole_um, self.split_um, self.min_half_width_um,
                 self.min_area_um2, self.cluster_radius_um)
        if min(sizes) <= 0:
            raise ValueError("nucleus sizes must be positive")
        if self.max_aspect < 1 or self.cluster_min < 0:
            raise ValueError("max_aspect must be >= 1 and cluster_min >= 0")
        if self.member_um <= 0 or self.member_min < 1:
            raise ValueError("member_um must be positive and member_min >= 1")
        if not 0 <= self.edge_fraction < 1:
            raise ValueError("edge_fraction must be in [0, 1)")
        if not 1 <= self.hole_directions <= 4:
            raise ValueError("hole_directions must be 1 to 4")


@dataclass(frozen=True)
class Nuclei:
    """Nucleus objects of a (N, h, w) grid: ``labels`` 1..n (0 background) and per object
    (index ``i`` is label ``i + 1``) its tile, centre and shape."""

    labels: np.ndarray  #: (N, h, w) int32
    px_um: float  #: side of one grid pixel (µm)
    tile: np.ndarray  #: (n,) int32
    cy: np.ndarray  #: (n,) float64, grid pixels
    cx: np.ndarray
    area_um2: np.ndarray
    major_um: np.ndarray
    minor_um: np.ndarray
    fill: np.ndarray
    eccentricity: np.ndarray
    h_od: np.ndarray  #: mean haematoxylin OD
    unstained: np.ndarray  #: bool: mostly a hole in DAB, not haematoxylin
    closed: np.ndarray  #: bool: its edge is mostly an unstained interior's, closed by DAB

    def __len__(self) -> int:
        return len(self.tile)


# --------------------------------------------------------------------------- segmentation


def _haematoxylin_mask(h: np.ndarray, d: np.ndarray, p: NucleusParams) -> np.ndarray:
    """Nucleus pixels by haematoxylin (regions with a core, each down to ``edge_fraction``
    of its peak), where it outweighs DAB."""
    hs, contrast = nucleus_contrast(h, p.tumour, p.grid_um)
    labels, n, has_core = nucleus_regions(h, p.tumour, p.grid_um, (hs, contrast))
    mask = has_core.take(labels)
    if p.edge_fraction > 0:  # each region cut at its own half-maximum contour
        peak = np.zeros(n + 1, np.float32)
        np.maximum.at(peak, labels[mask], contrast[mask])
        mask &= contrast >= p.edge_fraction * peak.take(labels)
    mask &= h >= p.dab_ratio * d
    mask &= (h >= d) | (d < p.stained_od)
    return ndi.binary_fill_holes(mask, structure=plane_structure())


def _line_footprints(length_px: int) -> list[np.ndarray]:
    """Footprints (1, k, k) of straight lines of ``length_px`` pixels (odd) in four
    directions: 0, 45, 90 and 135 degrees; a diagonal's pixels are sqrt 2 apart, so it has
    fewer for about the same span end to end."""
    k = length_px
    diagonal = max(3, 2 * int(round((k - 1) / np.sqrt(2) / 2)) + 1)
    return [np.ones((1, 1, k), bool), np.ones((1, k, 1), bool),
            np.eye(diagonal, dtype=bool)[None], np.eye(diagonal, dtype=bool)[None, ::-1]]


def _enclosing_wall(d: np.ndarray, length_px: int, directions: int) -> np.ndarray:
    """The DAB wall that bounds each pixel across at least ``directions`` of four: of the
    grey-scale closings of ``d`` by lines of ``length_px`` at 0, 45, 90 and 135 degrees, the
    ``directions``-th highest. A closing by a line fills a pixel whose chord through the
    interior in that direction is shorter than the line: a cell interior is closed in every
    direction, or in all but those its membrane's gaps open. A corridor between two parallel
    walls (a row of cells stained on two sides, strands of stroma) or a pale bay opening onto
    a wider pale area (a lumen, a streak in stained secretion) is closed across one direction
    only; a closing by a square would have bridged it."""
    a, b, c, e = (ndi.minimum_filter(ndi.maximum_filter(d, footprint=fp), footprint=fp)
                  for fp in _line_footprints(length_px))
    # the k-th highest of four by a min/max network: five times faster than sorting a stack
    hi1, lo1, hi2, lo2 = np.maximum(a, b), np.minimum(a, b), np.maximum(c, e), np.minimum(c, e)
    if directions == 1:
        return np.maximum(hi1, hi2)
    if directions == 4:
        return np.minimum(lo1, lo2)
    # the two middle values are the lesser of the pairs' maxima and the greater of their minima
    lesser_high, greater_low = np.minimum(hi1, hi2), np.maximum(lo1, lo2)
    if directions == 2:
        return np.maximum(lesser_high, greater_low)
    return np.minimum(lesser_high, greater_low)


def _hole_mask(d: np.ndarray, p: NucleusParams) -> np.ndarray:
    """Unstained cell interiors: DAB at least ``hole_contrast_od`` below the wall that bounds
    it across ``hole_directions`` directions within ``hole_um`` (:func:`_enclosing_wall`: the
    membrane around) and in the lower half between that wall and the floor of the hole (the
    lowest DAB within ``hole_um``)."""
    n = max(3, 2 * int(round(p.hole_um / p.grid_um / 2)) + 1)
    k = (1, n, n)
    wall = _enclosing_wall(d, n, p.hole_directions)
    holes = d <= wall - p.hole_contrast_od
    floor = ndi.minimum_filter(d, size=k)
    floor += wall
    floor *= 0.5
    holes &= d <= floor
    return holes


def _edge(labels: np.ndarray) -> np.ndarray:
    """Pixels of labelled objects with a 4-neighbour outside their object (tile edges are
    not object edges)."""
    k = (1, 3, 3)
    return (labels > 0) & (ndi.maximum_filter(labels, size=k, mode="nearest")
                           != ndi.minimum_filter(labels, size=k, mode="nearest"))


def _split(mask: np.ndarray, p: NucleusParams) -> np.ndarray:
    """Label ``mask`` (N, h, w), touching round objects split at their necks (watershed of
    the distance transform from its local maxima); objects without a marker are dropped."""
    labels = np.zeros(mask.shape, np.int32)
    todo = np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1))
    if len(todo) == 0:
        return labels
    dist = np.zeros(mask.shape, np.float32)
    for i in todo:
        dist[i] = ndi.distance_transform_edt(mask[i])
    k = 2 * int(round(p.split_um / p.grid_um)) + 1
    peaks = dist == ndi.maximum_filter(dist, size=(1, k, k))
    peaks &= dist >= p.min_half_width_um / p.grid_um
    eight = np.zeros((3, 3, 3), bool)
    eight[1] = True  # 8-connected within a tile, never across tiles
    markers, _ = ndi.label(peaks, structure=eight)
    for i in todo:
        labels[i] = watershed(-dist[i], markers[i], mask=mask[i])
    return labels


def _compact(labels: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, int]:
    """Renumber the kept labels 1..n in order (``keep`` per old label, 0 included)."""
    keep = keep.copy()
    keep[0] = False
    new = np.zeros(len(keep), np.int32)
    new[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new.take(labels), int(keep.sum())


def _moments(labels: np.ndarray, n: int, weights: list[np.ndarray]
             ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per label 1..n: tile, and the sums of 1, y, x, yy, xx, xy and of each ``weights``."""
    zz, yy, xx = np.nonzero(labels)
    idx = labels[zz, yy, xx] - 1
    y, x = yy.astype(np.float64), xx.astype(np.float64)
    tile = np.zeros(n, np.int32)
    tile[idx] = zz
    cols = [None, y, x, y * y, x * x, y * x, *(w[zz, yy, xx] for w in weights)]
    return tile, [np.bincount(idx, weights=c, minlength=n) for c in cols]


def find_nuclei(h: np.ndarray, d: np.ndarray, p: NucleusParams,
                d_view: np.ndarray | None = None) -> Nuclei:
    """Nuclei of haematoxylin and DAB OD stacks ``h``, ``d`` (N, h, w) on the nucleus grid
    (``p.grid_um`` µm per pixel): detected, split, measured (see the module docstring).
    ``d_view`` is DAB as the ×20 view shows it (``d`` itself when None), on the same grid."""
    nuclear = _haematoxylin_mask(h, d, p)
    holes = _hole_mask(d if d_view is None else d_view, p) & ~nuclear
    labels = _split(nuclear | holes, p)
    n = int(labels.max())
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    labels, n = _compact(labels, sizes * p.grid_um**2 >= p.min_area_um2)
    edge = _edge(labels)
    tile, s = _moments(labels, n, [h, holes.astype(np.float32), (edge & holes).astype(np.float32)])
    n_edge = np.bincount(labels[edge], minlength=n + 1)[1:]
    area = np.maximum(s[0], 1)
    cy, cx = s[1] / area, s[2] / area
    vyy = s[3] / area - cy**2 + 1 / 12  # + a pixel's own variance
    vxx = s[4] / area - cx**2 + 1 / 12
    vxy = s[5] / area - cy * cx
    root = np.sqrt(((vyy - vxx) / 2) ** 2 + vxy**2)
    lo = np.maximum((vyy + vxx) / 2 - root, 0)
    hi = (vyy + vxx) / 2 + root
    minor, major = 4 * np.sqrt(lo), 4 * np.sqrt(hi)
    return Nuclei(
        labels=labels, px_um=p.grid_um, tile=tile, cy=cy, cx=cx,
        area_um2=s[0] * p.grid_um**2, major_um=major * p.grid_um, minor_um=minor * p.grid_um,
        fill=s[0] / np.maximum(np.pi / 4 * major * minor, 1e-9),
        eccentricity=np.sqrt(1 - lo / np.maximum(hi, 1e-12)),
        h_od=s[6] / area, unstained=s[7] / area > 0.5,
        closed=s[8] > n_edge / 2,
    )


# --------------------------------------------------------------------------- tumour criteria


def convex(nuc: Nuclei, p: NucleusParams) -> np.ndarray:
    """Per nucleus: convex and not spindle-shaped (``min_fill``, ``max_aspect``)."""
    keep = nuc.fill >= p.tumour.min_fill
    keep &= nuc.major_um <= p.max_aspect * np.maximum(nuc.minor_um, 1e-9)
    return keep


def epithelial(nuc: Nuclei, p: NucleusParams) -> np.ndarray:
    """Per nucleus: large, plump and convex enough for epithelium / carcinoma."""
    t = p.tumour
    keep = (nuc.area_um2 >= t.min_area_um2) & (nuc.area_um2 <= t.max_area_um2)
    keep &= (nuc.minor_um >= t.min_width_um) & convex(nuc, p)
    return keep


def _placed(tile: np.ndarray, y_um: np.ndarray, x_um: np.ndarray, p: NucleusParams
            ) -> np.ndarray:
    """(n, 2) points in µm with each tile placed far from the others, so that no search
    radius reaches across tiles."""
    gap = 4 * max(p.cluster_radius_um, p.member_um) + float(max(y_um.max(), x_um.max(), 0))
    return np.stack([y_um + tile * gap, x_um], axis=1)


def cohesive(tile: np.ndarray, y_um: np.ndarray, x_um: np.ndarray, candidate: np.ndarray,
             p: NucleusParams) -> tuple[np.ndarray, np.ndarray]:
    """Per nucleus: whether it is a candidate with at least ``cluster_min`` other candidates
    within ``cluster_radius_um`` in its own tile, and that neighbour count (candidates only,
    0 for the others)."""
    count = np.zeros(len(tile), np.int64)
    idx = np.flatnonzero(candidate)
    if len(idx):
        pts = _placed(tile, y_um, x_um, p)[idx]
        count[idx] = cKDTree(pts).query_ball_point(pts, p.cluster_radius_um,
                                                   return_length=True) - 1
    return candidate & (count >= p.cluster_min), count


def cluster_members(tile: np.ndarray, y_um: np.ndarray, x_um: np.ndarray, tumour: np.ndarray,
                    candidate: np.ndarray, p: NucleusParams) -> np.ndarray:
    """``tumour`` and the ``candidate`` cells (convex, not spindle) with at least
    ``member_min`` tumour cells within ``member_um`` in their own tile: the clusters' other
    cells (step 7 of the module docstring)."""
    out = tumour.copy()
    seeds, others = np.flatnonzero(tumour), np.flatnonzero(candidate & ~tumour)
    if len(seeds) >= p.member_min and len(others):
        pts = _placed(tile, y_um, x_um, p)
        near = cKDTree(pts[seeds]).query_ball_point(pts[others], p.member_um,
                                                    return_length=True)
        out[others[near >= p.member_min]] = True
    return out
