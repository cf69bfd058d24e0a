"""Colour deconvolution and the weight-free ``dab-membrane`` tile scorer.

The scorer reads HER2 membrane staining the way the ASCO/CAP definitions describe it, with
measurements a pathologist can check:

1. optical density (OD = -log10(I / 255)) and colour deconvolution into haematoxylin and DAB
   (Ruifrok & Johnston; the stain matrix is a parameter and can be estimated per slide with
   :func:`estimate_stain_matrix`);
2. tumour/epithelium is found from haematoxylin morphology alone (large plump nuclei in
   dense clusters, see :mod:`napari_her2.tumour`), so a HER2 0 carcinoma is tumour too;
   :meth:`DabMembraneScorer.for_slide` adapts the stain vectors to the slide;
3. membranes are thin bright DAB ridges (Hessian of the smoothed DAB image), binned weak /
   moderate / strong by their DAB OD (QuPath-like 0.2 / 0.4 / 0.6);
4. stained cells are the tumour area within a cell radius of a membrane; complete membranes
   enclose cell-sized regions, so completeness is the stained area that lies inside such
   closed rings (membrane connectivity in the spirit of Brügmann et al. 2012); for gastric
   tissue (``organ="gastric"``) long basolateral / lateral membrane pieces count as complete;
5. soft class probabilities are products of logistic memberships of these measurements in the
   ASCO/CAP definitions, so that the arg-max is the hard rule and the temperature of each
   threshold says how sure the scorer is near it.

All thresholds live in :class:`DabMembraneParams`; nothing in the code body is a tuned number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .predict import Prediction
from .tumour import (
    COARSE,
    TumourParams,
    block_reduce,
    box_mean,
    expand,
    plane_structure,
    smooth,
    tumour_mask,
)

logger = logging.getLogger(__name__)

Vector3 = tuple[float, float, float]

#: H-DAB stain OD vectors (R, G, B) of Ruifrok & Johnston 2001, as QuPath uses them by default
DEFAULT_HAEMATOXYLIN: Vector3 = (0.651, 0.701, 0.210)
DEFAULT_DAB: Vector3 = (0.269, 0.568, 0.778)


#: OD of every 8-bit intensity; 0 is read as 1 so that OD stays finite (max log10(255) = 2.4)
_OD_LUT = (-np.log10(np.maximum(np.arange(256), 1) / 255.0)).astype(np.float32)

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

LIMITS = (
    "Research use only, not for diagnosis. A rule-based reading of DAB membrane staining per "
    "tile: it does not tell invasive carcinoma from in-situ carcinoma or normal epithelium, "
    "finds tumour from haematoxylin morphology (large plump nuclei in dense clusters), so solid "
    "sheets of lymphocytes whose nuclei merge can read as tumour, and it reads area fractions "
    "rather than counting cells. It assumes brightfield H-DAB at a known um/px; stain variation (DAB hue, haematoxylin strength, scanner colour) shifts the OD "
    "thresholds, so estimate a per-slide stain matrix or recalibrate the thresholds for a new "
    "lab. Cytoplasmic DAB, edge artefacts, pigment and crush artefacts can read as membrane. "
    "Breast: incomplete moderate/strong staining is called 2+ (equivocal); gastric "
    "(organ='gastric'): long basolateral/lateral membranes count as complete."
)


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
        """Canonical JSON of the parameters (sorted keys, so it hashes stably)."""
        return json.dumps(asdict(self), sort_keys=True)


# --------------------------------------------------------------------------- deconvolution


def stain_matrix(haematoxylin: Vector3, dab: Vector3) -> np.ndarray:
    """(3, 3) matrix whose rows are unit OD vectors of haematoxylin, DAB and a residual."""
    h = np.asarray(haematoxylin, np.float64)
    d = np.asarray(dab, np.float64)
    h = h / np.linalg.norm(h)
    d = d / np.linalg.norm(d)
    r = np.cross(h, d)
    return np.stack([h, d, r / np.linalg.norm(r)])


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Per-channel optical density of uint8 RGB pixels (float32, same shape)."""
    if rgb.dtype != np.uint8:
        raise TypeError(f"expected uint8 RGB, got {rgb.dtype}")
    return _OD_LUT[rgb]


def deconvolve(rgb: np.ndarray, matrix: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin and DAB OD images (float32, >= 0) of uint8 RGB ``(..., 3)`` pixels."""
    m = stain_matrix(DEFAULT_HAEMATOXYLIN, DEFAULT_DAB) if matrix is None else matrix
    inv = np.linalg.inv(np.asarray(m, np.float64)).astype(np.float32)
    od = optical_density(rgb)
    h = od @ inv[:, 0]
    d = od @ inv[:, 1]
    return np.maximum(h, 0, out=h), np.maximum(d, 0, out=d)


def estimate_stain_matrix(
    rgb: np.ndarray, *, min_od: float = 0.15, percentile: float = 1.0
) -> tuple[Vector3, Vector3]:
    """Estimate a slide's haematoxylin and DAB OD vectors (Macenko et al. 2009).

    The OD of stained pixels (summed OD > 3 * ``min_od``) is projected on the plane of its two
    main directions; the extreme angles (robust ``percentile``) are the two stains. The one
    that absorbs relatively more blue is DAB. Returns (haematoxylin, dab) unit vectors.
    """
    od = optical_density(np.asarray(rgb).reshape(-1, 3)).astype(np.float64)
    od = od[od.sum(axis=1) > 3 * min_od]
    if od.shape[0] < 10:
        raise ValueError("too few stained pixels to estimate a stain matrix")
    _, vecs = np.linalg.eigh(np.cov(od.T))
    plane = vecs[:, [2, 1]] * np.sign(vecs[:, [2, 1]].sum(axis=0))
    proj = od @ plane
    angles = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(angles, [percentile, 100 - percentile])
    a = plane @ np.array([np.cos(lo), np.sin(lo)])
    b = plane @ np.array([np.cos(hi), np.sin(hi)])
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    hem, dab = (b, a) if a[2] - a[0] > b[2] - b[0] else (a, b)
    return _as_vector(hem), _as_vector(dab)


def _angle_deg(a: Vector3, b: Vector3) -> float:
    """Angle in degrees between two OD vectors."""
    u, v = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _as_vector(v: np.ndarray) -> Vector3:
    return (float(v[0]), float(v[1]), float(v[2]))


# --------------------------------------------------------------------------- measurements


def ridge_strength(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Scale-normalised bright-ridge strength of a (N, H, W) stack.

    The most negative Hessian eigenvalue of the Gaussian-smoothed image, negated and times
    sigma^2 (0 where the image is not concave across any direction).
    """
    g = smooth(image, sigma_px)
    gyy = np.zeros_like(g)
    gxx = np.zeros_like(g)
    gyy[:, 1:-1] = g[:, 2:] + g[:, :-2]
    gyy[:, 1:-1] -= 2 * g[:, 1:-1]
    gxx[:, :, 1:-1] = g[:, :, 2:] + g[:, :, :-2]
    gxx[:, :, 1:-1] -= 2 * g[:, :, 1:-1]
    gxy = np.zeros_like(g)
    gxy[:, 1:-1, 1:-1] = g[:, 2:, 2:] + g[:, :-2, :-2]
    gxy[:, 1:-1, 1:-1] -= g[:, 2:, :-2]
    gxy[:, 1:-1, 1:-1] -= g[:, :-2, 2:]
    gxy *= 0.25
    diff = gxx - gyy
    diff *= 0.5
    np.square(diff, out=diff)
    np.square(gxy, out=gxy)
    diff += gxy
    np.sqrt(diff, out=diff)
    gxx += gyy
    gxx *= -0.5
    gxx += diff  # -(lambda_min) = -(trace / 2 - root)
    np.maximum(gxx, 0, out=gxx)
    gxx *= np.float32(sigma_px**2)
    return gxx


def _per_tile_sum(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1).sum(axis=1, dtype=np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den per tile, 0 where den is 0."""
    safe = np.where(den > 0, den, 1.0)
    return np.where(den > 0, num / safe, 0.0)


def _drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    """Remove connected pieces of a (N, H, W) mask smaller than ``min_px`` pixels."""
    labels, n = ndi.label(mask, structure=plane_structure())
    keep = np.bincount(labels.ravel(), minlength=n + 1) >= min_px
    keep[0] = False
    return keep[labels]


def _open_regions(membrane: np.ndarray, p: DabMembraneParams) -> np.ndarray:
    """Pixels of regions larger than a cell that (gap-bridged) membranes do not close off.

    Everything else is a membrane wall or lies in a cell-sized region closed all around.
    """
    gap = 2 * int(round(p.px(p.gap_um))) + 1
    walls = ndi.maximum_filter(membrane, size=(1, gap, gap)) if gap > 1 else membrane
    labels, n = ndi.label(~walls, structure=plane_structure())
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    large = sizes > p.area_px(p.max_cell_area_um2)
    large[0] = False
    return large[labels]


@dataclass(frozen=True)
class _Masks:
    """Pixel masks and stain images of a stack of tiles (all (N, H, W))."""

    h: np.ndarray
    d: np.ndarray
    ridge: np.ndarray
    nuclei: np.ndarray
    membrane: np.ndarray
    tumour: np.ndarray


def _near(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Pixels within about ``radius_px`` (square window) of a mask pixel, on a coarse grid."""
    f = COARSE
    small = block_reduce(mask, f, "max")
    return expand(box_mean(small, (2 * radius_px + 1) / f) > 0, f, mask.shape)


def _masks(tiles: np.ndarray, p: DabMembraneParams) -> _Masks:
    """Deconvolve tiles and find nuclei, membranes and cellular (tumour) tissue."""
    h, d = deconvolve(tiles, stain_matrix(p.haematoxylin, p.dab))
    ridge = ridge_strength(d, p.px(p.ridge_sigma_um))
    membrane = (ridge >= p.ridge_min) & (d >= p.membrane_od) & (d >= p.membrane_dab_ratio * h)
    membrane = _drop_small(membrane, p.area_px(p.min_membrane_area_um2))
    tumour, nuclei = tumour_mask(h, membrane, p.tumour, p.mpp)
    return _Masks(h, d, ridge, nuclei, membrane & tumour, tumour)


def _lateral_fraction(membrane: np.ndarray, p: DabMembraneParams) -> np.ndarray:
    """Per tile: fraction of membrane pixels in pieces as long as a lateral cell border.

    A piece's length is its area over a membrane's width (about 1 um).
    """
    labels, n = ndi.label(membrane, structure=plane_structure())
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    long = sizes >= p.area_px(p.lateral_length_um * 1.0)
    long[0] = False
    return _ratio(_per_tile_sum(long[labels]), _per_tile_sum(membrane))


def _intensity_features(m: _Masks, p: DabMembraneParams) -> list[np.ndarray]:
    """Ridge-weighted mean DAB OD of tumour membranes and its faint/weak/moderate/strong split.

    Weighting by ridge strength lets a membrane's centre line count more than its flanks.
    """
    n = m.d.shape[0]
    tile, yy, xx = np.nonzero(m.membrane)
    w = m.ridge[tile, yy, xx].astype(np.float64)
    od = m.d[tile, yy, xx]
    total = np.bincount(tile, weights=w, minlength=n)
    mean = _ratio(np.bincount(tile, weights=w * od, minlength=n), total)
    level = np.searchsorted(np.array([p.weak_od, p.moderate_od, p.strong_od]), od, "right")
    per_bin = np.bincount(tile * 4 + level, weights=w, minlength=n * 4).reshape(n, 4)
    return [mean, *(_ratio(per_bin[:, k], total) for k in range(4))]


def measure(tiles: np.ndarray, params: DabMembraneParams | None = None) -> np.ndarray:
    """Per-tile measurements (N, len(FEATURE_NAMES)) float32 of uint8 tiles (N, H, W, 3)."""
    p = params or DabMembraneParams()
    m = _masks(tiles, p)
    cells = m.tumour & ~m.membrane
    near = _near(m.membrane, p.px(p.cell_radius_um))
    stained = near & cells
    complete = stained & ~_open_regions(m.membrane, p)
    n_tumour = _per_tile_sum(m.tumour)
    n_stained = _per_tile_sum(stained)
    cols = [
        n_tumour / (tiles.shape[1] * tiles.shape[2]),
        _ratio(_per_tile_sum(m.nuclei & m.tumour), n_tumour),
        _ratio(_per_tile_sum(m.membrane), n_tumour),
        _ratio(n_stained, _per_tile_sum(cells)),
        _ratio(_per_tile_sum(complete), n_stained),
        *_intensity_features(m, p),
        _ratio(_per_tile_sum(np.where(m.tumour, m.h, 0)), n_tumour),
        _lateral_fraction(m.membrane, p),
    ]
    return np.stack(cols, axis=1).astype(np.float32)


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


# --------------------------------------------------------------------------- the predictor


#: threads that share one batch of tiles, and the fewest tiles worth a thread
MAX_THREADS = 4
MIN_TILES_PER_THREAD = 4


@dataclass
class DabMembraneScorer:
    """The weight-free ``dab-membrane`` tile scorer (implements ``TilePredictor``)."""

    params: DabMembraneParams = field(default_factory=DabMembraneParams)
    name: str = field(default="dab-membrane", init=False)
    classes: tuple[str, ...] = field(default=CLASSES, init=False)
    input_size: int = field(default=256, init=False)
    feature_names: tuple[str, ...] = field(default=FEATURE_NAMES, init=False)

    @property
    def target_mpp(self) -> float:
        """Resolution tiles must be read at: the one the lengths in ``params`` assume."""
        return self.params.mpp

    @property
    def sha256(self) -> str:
        """Hash of the parameters: the scorer has no weights, its thresholds are its model."""
        return hashlib.sha256(self.params.to_json().encode()).hexdigest()

    def predict(self, tiles: np.ndarray) -> Prediction:
        """Score uint8 tiles (N, H, W, 3)."""
        tiles = np.asarray(tiles)
        if tiles.ndim != 4 or tiles.shape[-1] != 3:
            raise ValueError(f"expected tiles of shape (N, H, W, 3), got {tiles.shape}")
        if tiles.shape[0] == 0:
            empty = np.zeros((0, len(FEATURE_NAMES)), np.float32)
            return Prediction(np.zeros((0, len(CLASSES)), np.float32), empty)
        feats = self._measure_parallel(tiles)
        return Prediction(classify(feats, self.params), feats)

    def at_mpp(self, mpp: float) -> DabMembraneScorer:
        """The same scorer for tiles read at ``mpp`` µm/px (its lengths are in microns)."""
        if mpp == self.params.mpp:
            return self
        return DabMembraneScorer(replace(self.params, mpp=float(mpp)))  # keeps organ, stains

    def for_organ(self, organ: str) -> DabMembraneScorer:
        """The same scorer applying the completeness definition of ``organ``'s guideline."""
        if organ == self.params.organ:
            return self
        return DabMembraneScorer(replace(self.params, organ=organ))

    def for_slide(self, rgb_sample: np.ndarray,
                  tissue_mask: np.ndarray | None = None) -> DabMembraneScorer:
        """A copy with haematoxylin and DAB vectors estimated from this slide's pixels.

        ``rgb_sample``: uint8 RGB pixels of the slide (a low-resolution view or a stack of
        tiles, ``(..., 3)``); ``tissue_mask``: the same shape without the channel axis, to
        leave glass out. Each estimated vector is used only when it lies within
        ``max_stain_angle_deg`` of the default, and the DAB vector only when at least
        ``min_dab_fraction`` of the pixels carry DAB of at least ``weak_od``; otherwise (or
        without enough stained pixels) the default stays: a HER2 0 or faint 1+ slide has no DAB
        to estimate a vector from. Tiles read at the scoring resolution give a sharper
        estimate than a low-resolution thumbnail, whose pixels mix the two stains.
        """
        rgb = np.asarray(rgb_sample)[..., :3].reshape(-1, 3)
        if tissue_mask is not None:
            rgb = rgb[np.asarray(tissue_mask, bool).reshape(-1)]
        try:
            hem, dab = estimate_stain_matrix(np.ascontiguousarray(rgb, np.uint8))
        except ValueError as err:
            logger.info("stain vectors: keeping the defaults (%s)", err)
            return self
        p = self.params
        _, d = deconvolve(rgb, stain_matrix(p.haematoxylin, p.dab))
        enough_dab = float((d >= p.weak_od).mean()) >= p.min_dab_fraction
        hem = hem if _angle_deg(hem, DEFAULT_HAEMATOXYLIN) <= p.max_stain_angle_deg else p.haematoxylin
        plausible = enough_dab and _angle_deg(dab, DEFAULT_DAB) <= p.max_stain_angle_deg
        dab = dab if plausible else p.dab
        if _angle_deg(hem, dab) < p.max_stain_angle_deg:  # too close to tell apart
            hem, dab = p.haematoxylin, p.dab
        logger.info("stain vectors: haematoxylin %s, DAB %s", np.round(hem, 3), np.round(dab, 3))
        return DabMembraneScorer(replace(p, haematoxylin=hem, dab=dab))

    def _measure_parallel(self, tiles: np.ndarray) -> np.ndarray:
        """``measure`` over slices of the batch in threads (numpy and scipy.ndimage release
        the GIL, so the cores share a batch); one thread in sync mode or for small batches."""
        from .threads import sync_mode

        n_threads = min(os.cpu_count() or 1, MAX_THREADS, len(tiles) // MIN_TILES_PER_THREAD)
        if n_threads < 2 or sync_mode():
            return measure(tiles, self.params)
        parts = np.array_split(np.arange(len(tiles)), n_threads)
        with ThreadPoolExecutor(n_threads, thread_name_prefix="napari-her2-stain") as pool:
            feats = list(pool.map(lambda idx: measure(tiles[idx], self.params), parts))
        return np.concatenate(feats)

    def describe(self) -> dict[str, Any]:
        """Model card: what the scorer measures, its thresholds and its limits."""
        return {
            "name": self.name,
            "kind": "rule-based (no weights)",
            "classes": list(self.classes),
            "input_size": self.input_size,
            "target_mpp": self.target_mpp,
            "feature_names": list(self.feature_names),
            "sha256": self.sha256,
            "thresholds": asdict(self.params),
            "method": (
                "H-DAB colour deconvolution; membranes = DAB Hessian ridges binned weak/"
                "moderate/strong by DAB OD; completeness = stained tumour area enclosed by "
                "membrane rings; ASCO/CAP tile classes with logistic soft thresholds"
            ),
            "training_data": None,
            "limits": LIMITS,
        }
