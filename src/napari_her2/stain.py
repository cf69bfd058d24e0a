"""Colour deconvolution and the weight-free ``dab-membrane`` tile scorer.

The scorer reads HER2 membrane staining the way the ASCO/CAP definitions describe it, with
measurements a pathologist can check:

1. optical density (OD = -log10(I / 255)) and colour deconvolution into haematoxylin and DAB
   (Ruifrok & Johnston; the stain matrix is a parameter and can be estimated per slide with
   :func:`estimate_stain_matrix`);
2. nuclei (haematoxylin) and DAB-stained pixels give a local cellularity; the dense part of a
   tile is taken as tumour/epithelium;
3. membranes are thin bright DAB ridges (Hessian of the smoothed DAB image), binned weak /
   moderate / strong by their DAB OD (QuPath-like 0.2 / 0.4 / 0.6);
4. stained cells are the tumour area within a cell radius of a membrane; complete membranes
   enclose cell-sized regions, so completeness is the stained area that lies inside such
   closed rings (membrane connectivity in the spirit of Brügmann et al. 2012);
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

logger = logging.getLogger(__name__)

Vector3 = tuple[float, float, float]

#: H-DAB stain OD vectors (R, G, B) of Ruifrok & Johnston 2001, as QuPath uses them by default
DEFAULT_HAEMATOXYLIN: Vector3 = (0.651, 0.701, 0.210)
DEFAULT_DAB: Vector3 = (0.269, 0.568, 0.778)

#: shrink factor of the coarse grids on which nuclei (x1) and cellularity (x2) are computed;
#: a speed choice, not a threshold: it only has to stay well below a nucleus' size
_COARSE = 2

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
)
CLASSES: tuple[str, ...] = ("0", "1+", "2+", "3+", "non-tumour")

LIMITS = (
    "Research use only, not for diagnosis. A rule-based reading of DAB membrane staining per "
    "tile: it does not tell invasive carcinoma from in-situ carcinoma or normal epithelium, "
    "counts any dense cellular area (lymphocyte aggregates included) as tumour, and reads "
    "area fractions rather than counting cells. It assumes brightfield H-DAB at about "
    "0.5 um/px; stain variation (DAB hue, haematoxylin strength, scanner colour) shifts the OD "
    "thresholds, so estimate a per-slide stain matrix or recalibrate the thresholds for a new "
    "lab. Cytoplasmic DAB, edge artefacts, pigment and crush artefacts can read as membrane. "
    "Incomplete moderate/strong staining (basolateral or lateral) is called 2+ (equivocal)."
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
    #: Gaussian smoothing before nuclei are thresholded (um)
    nucleus_sigma_um: float = 1.0
    #: haematoxylin OD above which a (smoothed) pixel may be nucleus
    nucleus_od: float = 0.04
    #: side of the window whose mean haematoxylin a nucleus must stand out from (um)
    nucleus_background_um: float = 12.0
    #: how far (OD) a nucleus rises above that background (bluish stroma and counterstain
    #: casts are background, not nuclei)
    nucleus_contrast_od: float = 0.02
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
    #: side of the window in which cellularity is measured (um)
    cellularity_window_um: float = 20.0
    #: local fraction of nucleus or DAB pixels (>= weak_od) that makes a pixel cellular tissue
    cellularity_min: float = 0.25
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


def _as_vector(v: np.ndarray) -> Vector3:
    return (float(v[0]), float(v[1]), float(v[2]))


# --------------------------------------------------------------------------- measurements


def _smooth(x: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing in the image plane of a (N, H, W) stack."""
    return ndi.gaussian_filter(x, sigma=(0, sigma_px, sigma_px), mode="nearest", truncate=3.0)


def _box_mean(x: np.ndarray, size_px: float) -> np.ndarray:
    """Local mean of a (N, H, W) image or mask in a square window (in-plane only)."""
    k = max(1, int(round(size_px)))
    return ndi.uniform_filter(x.astype(np.float32, copy=False), size=(1, k, k), mode="nearest")


def _block_reduce(x: np.ndarray, factor: int, how: str = "mean") -> np.ndarray:
    """Shrink a (N, H, W) stack by ``factor`` in-plane (block mean or max; edges padded)."""
    if factor == 1:
        return x
    hh, ww = x.shape[1:]
    ph, pw = -hh % factor, -ww % factor
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="edge")
    parts = [x[:, i::factor, j::factor] for i in range(factor) for j in range(factor)]
    if how == "max":
        return np.logical_or.reduce(parts) if x.dtype == bool else np.maximum.reduce(parts)
    out = parts[0].astype(np.float32)
    for part in parts[1:]:
        out += part
    out *= np.float32(1 / factor**2)
    return out


def _expand(x: np.ndarray, factor: int, shape: tuple[int, ...]) -> np.ndarray:
    """Undo :func:`_block_reduce`: repeat each pixel ``factor`` times and crop to ``shape``."""
    if factor == 1:
        return x
    big = np.repeat(np.repeat(x, factor, axis=1), factor, axis=2)
    return big[:, : shape[1], : shape[2]]


def ridge_strength(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Scale-normalised bright-ridge strength of a (N, H, W) stack.

    The most negative Hessian eigenvalue of the Gaussian-smoothed image, negated and times
    sigma^2 (0 where the image is not concave across any direction).
    """
    g = _smooth(image, sigma_px)
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


def _plane_structure() -> np.ndarray:
    """4-connectivity within each tile, none across the tiles of a stack."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndi.generate_binary_structure(2, 1)
    return structure


def _drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    """Remove connected pieces of a (N, H, W) mask smaller than ``min_px`` pixels."""
    labels, n = ndi.label(mask, structure=_plane_structure())
    keep = np.bincount(labels.ravel(), minlength=n + 1) >= min_px
    keep[0] = False
    return keep[labels]


def _open_regions(membrane: np.ndarray, p: DabMembraneParams) -> np.ndarray:
    """Pixels of regions larger than a cell that (gap-bridged) membranes do not close off.

    Everything else is a membrane wall or lies in a cell-sized region closed all around.
    """
    gap = 2 * int(round(p.px(p.gap_um))) + 1
    walls = ndi.maximum_filter(membrane, size=(1, gap, gap)) if gap > 1 else membrane
    labels, n = ndi.label(~walls, structure=_plane_structure())
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


def _nuclei(h: np.ndarray, p: DabMembraneParams) -> np.ndarray:
    """Nucleus mask: smoothed haematoxylin above a floor and above its local background.

    Computed at half resolution (nuclei are several microns wide) and expanded back.
    """
    f = _COARSE
    hs = _smooth(_block_reduce(h, f), p.px(p.nucleus_sigma_um) / f)
    contrast = hs - _box_mean(hs, p.px(p.nucleus_background_um) / f)
    nuclei = (hs >= p.nucleus_od) & (contrast >= p.nucleus_contrast_od)
    return _expand(nuclei, f, h.shape)


def _tumour(cellular: np.ndarray, p: DabMembraneParams) -> np.ndarray:
    """Tumour/epithelium mask: local density of cellular pixels, on a coarse grid."""
    f = 2 * _COARSE
    density = _box_mean(_block_reduce(cellular, f), p.px(p.cellularity_window_um) / f)
    return _expand(density >= p.cellularity_min, f, cellular.shape)


def _near(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Pixels within about ``radius_px`` (square window) of a mask pixel, on a coarse grid."""
    f = _COARSE
    small = _block_reduce(mask, f, "max")
    return _expand(_box_mean(small, (2 * radius_px + 1) / f) > 0, f, mask.shape)


def _masks(tiles: np.ndarray, p: DabMembraneParams) -> _Masks:
    """Deconvolve tiles and find nuclei, membranes and cellular (tumour) tissue."""
    h, d = deconvolve(tiles, stain_matrix(p.haematoxylin, p.dab))
    nuclei = _nuclei(h, p)
    ridge = ridge_strength(d, p.px(p.ridge_sigma_um))
    membrane = (ridge >= p.ridge_min) & (d >= p.membrane_od) & (d >= p.membrane_dab_ratio * h)
    membrane = _drop_small(membrane, p.area_px(p.min_membrane_area_um2))
    tumour = _tumour(nuclei | membrane | (d >= p.weak_od), p)
    return _Masks(h, d, ridge, nuclei, membrane & tumour, tumour)


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
        return DabMembraneScorer(replace(self.params, mpp=float(mpp)))

    def _measure_parallel(self, tiles: np.ndarray) -> np.ndarray:
        """``measure`` over slices of the batch in threads (numpy and scipy.ndimage release
        the GIL, so the cores share a batch); one thread in sync mode or for small batches."""
        from .inference import sync_mode

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
