"""Membrane measurements and tile classes of the weight-free ``dab-membrane`` scorer.

The measurements a pathologist can check, per tile of a (N, H, W, 3) uint8 batch:

1. haematoxylin and DAB optical density by colour deconvolution (:mod:`.deconvolution`);
2. tumour/epithelium from haematoxylin morphology alone (:mod:`.tumour`), so a HER2 0
   carcinoma is tumour too;
3. membranes: thin bright DAB ridges (Hessian of the smoothed DAB image), binned weak /
   moderate / strong by their DAB OD (QuPath-like 0.2 / 0.4 / 0.6);
4. stained cells: tumour area within a cell radius of a membrane; complete membranes enclose
   cell-sized regions, so completeness is the stained area inside such closed rings (membrane
   connectivity in the spirit of Brügmann et al. 2012); for gastric tissue
   (``organ="gastric"``) long basolateral / lateral membrane pieces count as complete;
5. soft class probabilities: products of logistic memberships of these measurements in the
   ASCO/CAP definitions, so that the arg-max is the hard rule and the temperature of each
   threshold says how sure the scorer is near it.

All thresholds live in :class:`DabMembraneParams`; nothing in the code body is a tuned number.
The whole batch is processed at once, each plane kept small enough to stay in the CPU cache
where that matters (smoothing, Hessian), and work whose result cannot count is skipped
(closed rings are only looked for in tiles with stained cells).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .deconvolution import (
    DEFAULT_DAB,
    DEFAULT_HAEMATOXYLIN,
    STAIN_FIELDS,
    WHITE,
    Vector3,
    deconvolve,
    rounded_stains,
    stain_matrix,
)
from .tumour import (
    COARSE,
    TumourParams,
    block_reduce,
    box_mean,
    count,
    count_expanded,
    dilate,
    expand,
    gaussian_kernel,
    plane_structure,
    smooth_plane,
    tumour_mask,
)

FEATURE_NAMES: tuple[str, ...] = (
    "tumour_fraction",
    "nucleus_fraction",
    "membrane_fraction",
    "stained_fraction",
    "completeness",
    "dab_od_mean",
    "faint_fraction",
    "weak_fraction",
    "moderate_fraction",
    "strong_fraction",
    "haematoxylin_od_mean",
    "lateral_fraction",
)
CLASSES: tuple[str, ...] = ("0", "1+", "2+", "3+", "non-tumour")
ORGANS: tuple[str, ...] = ("breast", "gastric")


#: version of the measurement itself, part of the scorer's identity: a change of what the code
#: does with the same parameters gives a new hash (2: the tumour mask no longer uses DAB;
#: 3: OD read against the slide's background)
METHOD_VERSION = 3


@dataclass(frozen=True)
class DabMembraneParams:
    """Every threshold of the ``dab-membrane`` scorer, with its default and its unit.

    Lengths are in microns and converted to pixels with ``mpp``, the resolution tiles are
    read at. OD values are deconvolved stain optical densities (log10 units).
    """

    #: microns per pixel of the tiles the scorer is given
    mpp: float = 0.5
    #: OD vectors (R, G, B) of haematoxylin and DAB; the third stain is their cross product
    haematoxylin: Vector3 = DEFAULT_HAEMATOXYLIN
    dab: Vector3 = DEFAULT_DAB
    #: colour (R, G, B) of glass, against which optical density is read (white-balanced: 255;
    #: estimated per slide, see :func:`.deconvolution.estimate_background`)
    background: Vector3 = WHITE
    #: tissue type whose guideline is applied: "breast" counts only circumferential
    #: (complete) membranes as complete; "gastric" also counts basolateral / lateral
    #: membranes (ASCO/CAP/CAP-ASCP gastroesophageal guideline, seed 001 Table 1)
    organ: str = "breast"
    #: how tumour/epithelium is found from haematoxylin morphology (see ``tumour.py``)
    tumour: TumourParams = field(default_factory=TumourParams)
    #: scale of the membrane ridge filter (um); about half a membrane's apparent width
    ridge_sigma_um: float = 0.75
    #: scale-normalised ridge strength (OD) above which a pixel is membrane-like
    ridge_min: float = 0.03
    #: lowest DAB OD of a membrane pixel ("barely perceptible")
    membrane_od: float = 0.1
    #: a membrane pixel has at least this many times as much DAB as haematoxylin (keeps the
    #: rims of blue nuclei out)
    membrane_dab_ratio: float = 1.0
    #: membrane pieces smaller than this area (um^2) are specks, not membrane
    min_membrane_area_um2: float = 4.0
    #: DAB OD bins of membrane intensity: weak >= weak_od, moderate >= moderate_od, strong >=
    #: strong_od (QuPath's defaults); below weak_od a membrane is faint
    weak_od: float = 0.2
    moderate_od: float = 0.4
    strong_od: float = 0.6
    #: tumour area fraction below which a tile is non-tumour
    min_tumour_fraction: float = 0.1
    #: distance from a membrane (um) within which tumour area counts as a stained cell
    cell_radius_um: float = 5.0
    #: membrane gaps up to this size (um) are bridged before rings are closed
    gap_um: float = 0.5
    #: largest area (um^2) a region enclosed by membrane may have and still be one cell
    max_cell_area_um2: float = 400.0
    #: stained fraction of tumour area above which staining counts (ASCO/CAP ">10% of cells")
    stained_cut: float = 0.1
    #: completeness above which staining counts as complete (circumferential)
    complete_cut: float = 0.5
    #: gastric: a membrane piece at least this long (um, at ~1 um width) is a lateral or
    #: basolateral cell border, about one side of a columnar cell
    lateral_length_um: float = 12.0
    #: gastric: fraction of membrane in such pieces above which staining counts as complete
    lateral_cut: float = 0.5
    #: largest angle (degrees) between a per-slide stain vector estimate and the default one
    #: for the estimate to be used (beyond it the estimate is taken as implausible)
    max_stain_angle_deg: float = 20.0
    #: fraction of the sampled pixels with DAB OD >= weak_od needed to estimate a DAB vector
    min_dab_fraction: float = 0.02
    #: softness (logistic temperature) of each threshold, in the unit of its measurement
    tumour_softness: float = 0.03
    stained_softness: float = 0.03
    complete_softness: float = 0.08
    intensity_softness: float = 0.04

    def __post_init__(self) -> None:
        if not self.weak_od < self.moderate_od < self.strong_od:
            raise ValueError("DAB thresholds must increase: weak_od < moderate_od < strong_od")
        if self.mpp <= 0:
            raise ValueError("mpp must be positive")
        if self.organ not in ORGANS:
            raise ValueError(f"organ must be one of {', '.join(ORGANS)}, got {self.organ!r}")
        soft = (
            self.tumour_softness,
            self.stained_softness,
            self.complete_softness,
            self.intensity_softness,
        )
        if min(soft) <= 0:
            raise ValueError("softness values must be positive")

    def px(self, microns: float) -> float:
        """A length in microns as pixels at ``mpp``."""
        return microns / self.mpp

    def area_px(self, square_microns: float) -> float:
        """An area in square microns as pixels at ``mpp``."""
        return square_microns / self.mpp**2

    def to_json(self) -> str:
        """Canonical JSON of the parameters (sorted keys), stain vectors included."""
        return json.dumps(asdict(self), sort_keys=True)

    def identity_json(self) -> str:
        """Canonical JSON of the fixed parameters: what a lab validates, and what names the
        scorer in a report. The stain vectors and the background are left out: a slide's are
        estimated from its pixels (an SVD whose last bits change with the BLAS build and the
        CPU), and they are reported beside the identity instead, rounded
        (:func:`.deconvolution.rounded_stains`)."""
        fixed = {k: v for k, v in asdict(self).items() if k not in STAIN_FIELDS}
        fixed["method_version"] = METHOD_VERSION
        return json.dumps(fixed, sort_keys=True)

    def stain_vectors(self) -> dict[str, list[float]]:
        """The haematoxylin and DAB OD vectors and the background in use, rounded (see
        :func:`.deconvolution.rounded_stains`)."""
        return rounded_stains(self.haematoxylin, self.dab, self.background)


# --------------------------------------------------------------------------- measurements


def _neg_min_eigenvalue(gxx: np.ndarray, gyy: np.ndarray, gxy: np.ndarray,
                       out: np.ndarray | None = None) -> np.ndarray:
    """Minus the smaller eigenvalue of 2x2 Hessians (root - trace / 2), into ``out``."""
    diff = gxx - gyy
    diff *= 0.5
    np.square(diff, out=diff)
    diff += np.square(gxy)
    np.sqrt(diff, out=diff)
    out = np.add(gxx, gyy, out=out)
    out *= -0.5
    out += diff
    return out


def _hessian_ridge(g: np.ndarray, out: np.ndarray) -> None:
    """Minus the smaller Hessian eigenvalue of one smoothed (H, W) plane, into ``out``.

    Second differences are central; on the one-pixel frame a difference that would need a
    pixel outside the plane is 0 (so the frame sees the other direction's curvature only).
    """
    c2 = 2 * g[1:-1, 1:-1]
    gyy = g[2:, 1:-1] + g[:-2, 1:-1]
    gyy -= c2
    gxx = g[1:-1, 2:] + g[1:-1, :-2]
    gxx -= c2
    gxy = g[2:, 2:] + g[:-2, :-2]
    gxy -= g[2:, :-2]
    gxy -= g[:-2, 2:]
    gxy *= 0.25
    _neg_min_eigenvalue(gxx, gyy, gxy, out[1:-1, 1:-1])
    out[[0, -1], :] = 0
    out[:, [0, -1]] = 0
    rows = g[[0, -1], 2:] + g[[0, -1], :-2]  # top and bottom rows: x curvature only
    rows -= 2 * g[[0, -1], 1:-1]
    out[[0, -1], 1:-1] = _neg_min_eigenvalue(rows, np.zeros_like(rows), np.zeros_like(rows))
    cols = g[2:, [0, -1]] + g[:-2, [0, -1]]  # left and right columns: y curvature only
    cols -= 2 * g[1:-1, [0, -1]]
    out[1:-1, [0, -1]] = _neg_min_eigenvalue(np.zeros_like(cols), cols, np.zeros_like(cols))


def ridge_strength(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Scale-normalised bright-ridge strength of a (N, H, W) stack.

    The most negative Hessian eigenvalue of the Gaussian-smoothed image, negated and times
    sigma^2 (0 where the image is not concave across any direction). Computed plane by plane
    so that the smoothed plane and the Hessian's temporaries stay in the CPU cache.
    """
    kernel = gaussian_kernel(sigma_px)
    out = np.empty(image.shape, np.float32)
    for plane, dest in zip(image, out):
        if min(plane.shape) < 3:
            dest[...] = 0
            continue
        _hessian_ridge(smooth_plane(plane.astype(np.float32, copy=False), kernel), dest)
    np.maximum(out, 0, out=out)
    out *= np.float32(sigma_px**2)
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den per tile, 0 where den is 0."""
    safe = np.where(den > 0, den, 1.0)
    return np.where(den > 0, num / safe, 0.0)


def _piece_sizes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the 4-connected pieces of a (N, H, W) mask and each label's pixel count."""
    labels, n = ndi.label(mask, structure=plane_structure())
    return labels, np.bincount(labels.ravel(), minlength=n + 1)


def _sparse_pieces(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Piece label of every true pixel of a sparse (N, H, W) mask (raster order) and each
    label's pixel count; empty tiles are not labelled, and only the true pixels are visited
    after labelling."""
    todo = np.flatnonzero(count(mask))
    some = mask[todo] if len(todo) < len(mask) else mask
    labels, n = ndi.label(some, structure=plane_structure())
    of_pixel = labels[some]
    return of_pixel, np.bincount(of_pixel, minlength=n + 1)


def _drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    """Remove connected pieces of a (N, H, W) mask smaller than ``min_px`` pixels."""
    of_pixel, sizes = _sparse_pieces(mask)
    out = np.zeros_like(mask)
    out[mask] = (sizes >= min_px)[of_pixel]
    return out


def _open_regions(membrane: np.ndarray, p: DabMembraneParams) -> np.ndarray:
    """Pixels of regions larger than a cell that (gap-bridged) membranes do not close off.

    Everything else is a membrane wall or lies in a cell-sized region closed all around.
    """
    walls = dilate(membrane, int(round(p.px(p.gap_um))))
    np.logical_not(walls, out=walls)
    labels, sizes = _piece_sizes(walls)
    large = sizes > p.area_px(p.max_cell_area_um2)
    large[0] = False
    return large.take(labels)


def _n_complete(stained: np.ndarray, membrane: np.ndarray, n_stained: np.ndarray,
                p: DabMembraneParams) -> np.ndarray:
    """Per tile: stained pixels inside closed rings; only tiles with stained pixels are
    searched for rings (elsewhere the count is 0 whatever the rings)."""
    out = np.zeros(len(stained))
    todo = np.flatnonzero(n_stained > 0)
    if len(todo) == 0:
        return out
    if len(todo) < len(stained):
        stained, membrane = stained[todo], membrane[todo]
    out[todo] = count(stained & ~_open_regions(membrane, p))
    return out


@dataclass(frozen=True)
class _Masks:
    """Pixel masks and stain images of a stack of tiles (all (N, H, W))."""

    h: np.ndarray
    d: np.ndarray
    ridge: np.ndarray
    nuclei_coarse: np.ndarray  #: on the (N, H/COARSE, W/COARSE) grid
    membrane: np.ndarray
    tumour: np.ndarray


def _near(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Pixels within about ``radius_px`` (square window) of a mask pixel, on a coarse grid."""
    f = COARSE
    small = block_reduce(mask, f, "max")
    return expand(box_mean(small, (2 * radius_px + 1) / f) > 0, f, mask.shape)


def _masks(tiles: np.ndarray, p: DabMembraneParams) -> _Masks:
    """Deconvolve tiles and find nuclei, membranes and cellular (tumour) tissue."""
    h, d = deconvolve(tiles, stain_matrix(p.haematoxylin, p.dab), p.background)
    ridge = ridge_strength(d, p.px(p.ridge_sigma_um))
    membrane = ridge >= p.ridge_min
    membrane &= d >= p.membrane_od
    membrane &= d >= (h if p.membrane_dab_ratio == 1 else p.membrane_dab_ratio * h)
    membrane = _drop_small(membrane, p.area_px(p.min_membrane_area_um2))
    tumour, nuclei_coarse = tumour_mask(h, p.tumour, p.mpp)
    membrane &= tumour
    return _Masks(h, d, ridge, nuclei_coarse, membrane, tumour)


def _lateral_fraction(membrane: np.ndarray, n_membrane: np.ndarray, p: DabMembraneParams
                      ) -> np.ndarray:
    """Per tile: fraction of membrane pixels in pieces as long as a lateral cell border.

    A piece's length is its area over a membrane's width (about 1 um).
    """
    of_pixel, sizes = _sparse_pieces(membrane)
    long = (sizes >= p.area_px(p.lateral_length_um * 1.0))[of_pixel]
    tile = np.repeat(np.arange(len(membrane)), n_membrane.astype(np.intp))
    return _ratio(np.bincount(tile, weights=long, minlength=len(membrane)), n_membrane)


def _intensity_features(m: _Masks, n_membrane: np.ndarray, p: DabMembraneParams
                        ) -> list[np.ndarray]:
    """Ridge-weighted mean DAB OD of tumour membranes and its faint/weak/moderate/strong split.

    Weighting by ridge strength lets a membrane's centre line count more than its flanks.
    """
    n = m.d.shape[0]
    tile = np.repeat(np.arange(n), n_membrane.astype(np.intp))
    w = m.ridge[m.membrane].astype(np.float64)
    od = m.d[m.membrane]
    total = np.bincount(tile, weights=w, minlength=n)
    mean = _ratio(np.bincount(tile, weights=w * od, minlength=n), total)
    level = (od >= p.weak_od).view(np.int8) + (od >= p.moderate_od).view(np.int8)
    level += (od >= p.strong_od).view(np.int8)  # the number of bins od reaches, 0..3
    per_bin = np.bincount(tile * 4 + level, weights=w, minlength=n * 4).reshape(n, 4)
    return [mean, *(_ratio(per_bin[:, k], total) for k in range(4))]


def measure(tiles: np.ndarray, params: DabMembraneParams | None = None) -> np.ndarray:
    """Per-tile measurements (N, len(FEATURE_NAMES)) float32 of uint8 tiles (N, H, W, 3)."""
    p = params or DabMembraneParams()
    m = _masks(tiles, p)
    cells = m.tumour & ~m.membrane
    stained = _near(m.membrane, p.px(p.cell_radius_um))
    stained &= cells
    n_tumour = count(m.tumour)
    n_stained = count(stained)
    n_membrane = count(m.membrane)
    h_tumour = np.where(m.tumour, m.h, 0).reshape(len(tiles), -1).sum(axis=1, dtype=np.float64)
    cols = [
        n_tumour / (tiles.shape[1] * tiles.shape[2]),
        _ratio(count_expanded(m.nuclei_coarse & block_reduce(m.tumour, COARSE, "max"), COARSE,
                              m.tumour.shape), n_tumour),
        _ratio(n_membrane, n_tumour),
        _ratio(n_stained, count(cells)),
        _ratio(_n_complete(stained, m.membrane, n_stained, p), n_stained),
        *_intensity_features(m, n_membrane, p),
        _ratio(h_tumour, n_tumour),
        _lateral_fraction(m.membrane, n_membrane, p),
    ]
    return np.stack(cols, axis=1).astype(np.float32)


# --------------------------------------------------------------------------- classification


# --------------------------------------------------------------------------- classification


def _member(x: np.ndarray, cut: float, softness: float) -> np.ndarray:
    """Logistic membership of ``x > cut``: 0.5 at the cut, ``softness`` wide."""
    z = np.clip((x - cut) / softness, -60, 60)
    return 1.0 / (1.0 + np.exp(-z))


def classify(features: np.ndarray, params: DabMembraneParams | None = None) -> np.ndarray:
    """Class probabilities (N, 5) in ``CLASSES`` order from :func:`measure` features.

    With T tumour, S stained (>10% of tumour), C complete, and I_w, I_m, I_s the memberships
    of the membrane DAB OD in >= weak, >= moderate, >= strong:
    3+ = S C I_s; 2+ = S C (I_w - I_s) + S (1 - C) I_m; 1+ = S C (1 - I_w) + S (1 - C)(1 - I_m);
    0 = 1 - S; each times T, and non-tumour = 1 - T.
    """
    p = params or DabMembraneParams()
    f = {name: features[:, i].astype(np.float64) for i, name in enumerate(FEATURE_NAMES)}
    t = _member(f["tumour_fraction"], p.min_tumour_fraction, p.tumour_softness)
    s = _member(f["stained_fraction"], p.stained_cut, p.stained_softness)
    c = _member(f["completeness"], p.complete_cut, p.complete_softness)
    if p.organ == "gastric":  # basolateral / lateral membranes count as complete
        c = np.maximum(c, _member(f["lateral_fraction"], p.lateral_cut, p.complete_softness))
    od = f["dab_od_mean"]
    i_w, i_m, i_s = (_member(od, cut, p.intensity_softness)
                     for cut in (p.weak_od, p.moderate_od, p.strong_od))
    i_m = np.minimum(i_m, i_w)
    i_s = np.minimum(i_s, i_m)
    p3 = s * c * i_s
    p2 = s * c * (i_w - i_s) + s * (1 - c) * i_m
    p1 = s * c * (1 - i_w) + s * (1 - c) * (1 - i_m)
    p0 = 1 - s
    probs = np.stack([t * p0, t * p1, t * p2, t * p3, 1 - t], axis=1)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs.astype(np.float32)

