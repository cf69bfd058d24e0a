"""Colour deconvolution of brightfield H-DAB pixels (Ruifrok & Johnston 2001).

Optical density (OD = -log10(I / I0)) per channel, its split into haematoxylin and DAB with
a stain matrix, per-slide estimates of the two stain vectors (Macenko et al. 2009) and of
the background I0, the colour of light through glass (255 on a white-balanced scan), and how
a report shows those estimates. Used by the ``dab-membrane`` and ``dab-cells`` scorers
(:mod:`napari_her2.ihc.membrane`, :mod:`napari_her2.ihc.cells`) and the stain check.

Why the background matters: a scan whose glass is grey (under-exposed, or a field cut from a
darker scan) adds the same OD to every pixel, ``log10(255 / I0)``, which deconvolution passes on
to both stains: a field whose glass reads 185 carries 0.14 OD of "DAB" and 0.12 of
"haematoxylin" everywhere, above the floor of a stained membrane (0.1), and it tilts the
estimated stain vectors towards grey. Read against its own glass, a pixel's OD is what its
stains absorb, whatever the exposure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Vector3 = tuple[float, float, float]

#: H-DAB stain OD vectors (R, G, B) of Ruifrok & Johnston 2001, as QuPath uses them by default
DEFAULT_HAEMATOXYLIN: Vector3 = (0.651, 0.701, 0.210)
DEFAULT_DAB: Vector3 = (0.269, 0.568, 0.778)

#: OD of every 8-bit intensity; 0 is read as 1 so that OD stays finite (max log10(255) = 2.4)
OD_LUT = (-np.log10(np.maximum(np.arange(256), 1) / 255.0)).astype(np.float32)

#: background (R, G, B) of a white-balanced scan: glass reads 255
WHITE: Vector3 = (255.0, 255.0, 255.0)
#: what is estimated per slide (left out of a weight-free scorer's identity), and the decimals
#: the stain vectors (unit OD vectors) and the background (8-bit levels) are reported with
STAIN_FIELDS = ("haematoxylin", "dab", "background")
STAIN_DECIMALS = 3
BACKGROUND_DECIMALS = 1
#: widest spread between the channels of a pixel (8-bit levels) that is still neutral grey.
#: Glass is neutral whatever the exposure; both stains are coloured (haematoxylin blue, DAB
#: brown), so a neutral pixel is glass, a lumen or a fat space, not stained tissue
NEUTRAL_SPREAD = 12
#: the background is the median of the brightest ``BACKGROUND_TOP`` of the neutral pixels
BACKGROUND_TOP = 0.01
#: fewest neutral pixels from which a background is estimated (else it stays white)
BACKGROUND_MIN_PIXELS = 50
#: darkest background taken (8-bit, each channel): below it the "glass" is more likely dark
#: tissue or a dark scan's shadow than a cast, and the background stays white
BACKGROUND_MIN = 128.0


def stain_matrix(haematoxylin: Vector3, dab: Vector3) -> np.ndarray:
    """(3, 3) matrix whose rows are unit OD vectors of haematoxylin, DAB and a residual."""
    h = np.asarray(haematoxylin, np.float64)
    d = np.asarray(dab, np.float64)
    h = h / np.linalg.norm(h)
    d = d / np.linalg.norm(d)
    r = np.cross(h, d)
    return np.stack([h, d, r / np.linalg.norm(r)])


def _channel_luts(background: Vector3 | None) -> np.ndarray:
    """(3, 256) float32: the optical density of each 8-bit level in R, G and B against the
    ``background`` (white when None), 0 where brighter than it."""
    if background is None or tuple(background) == WHITE:
        return np.broadcast_to(OD_LUT, (3, 256))
    shift = np.log10(255.0 / np.asarray(background, np.float64)).astype(np.float32)
    return np.maximum(OD_LUT[None, :] - shift[:, None], 0)


def optical_density(rgb: np.ndarray, background: Vector3 | None = None) -> np.ndarray:
    """Per-channel optical density of uint8 RGB pixels (float32, same shape) against the
    ``background`` (R, G, B) intensity of glass (white when None); brighter than the
    background reads 0."""
    if rgb.dtype != np.uint8:
        raise TypeError(f"expected uint8 RGB, got {rgb.dtype}")
    return _channel_luts(background)[np.arange(3), rgb]


def deconvolve(rgb: np.ndarray, matrix: np.ndarray | None = None,
               background: Vector3 | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin and DAB OD images (float32, >= 0) of uint8 RGB ``(..., 3)`` pixels, read
    against the ``background`` colour of glass (white when None).

    Each stain is a sum over the channels of a stain's share of that channel's OD, and the OD
    of a channel depends on its 8-bit level only: one table of 256 values per channel and
    stain, looked up per pixel, instead of the OD of every pixel times the inverse matrix
    (the same values to float rounding, 2-3 times faster)."""
    if rgb.dtype != np.uint8:
        raise TypeError(f"expected uint8 RGB, got {rgb.dtype}")
    m = stain_matrix(DEFAULT_HAEMATOXYLIN, DEFAULT_DAB) if matrix is None else matrix
    inv = np.linalg.inv(np.asarray(m, np.float64)).astype(np.float32)
    od = _channel_luts(background)
    channels = [rgb[..., c] for c in range(3)]
    planes = []
    for stain in (0, 1):
        luts = od * inv[:, stain, None]  # (3, 256): channel c's OD times its share
        plane = luts[0][channels[0]]
        plane += luts[1][channels[1]]
        plane += luts[2][channels[2]]
        planes.append(np.maximum(plane, 0, out=plane))
    return planes[0], planes[1]


def estimate_background(rgb: np.ndarray) -> Vector3:
    """The colour of glass of uint8 RGB pixels ``(..., 3)``: the median of the brightest
    ``BACKGROUND_TOP`` of the neutral pixels (channels within ``NEUTRAL_SPREAD`` levels).

    White when fewer than ``BACKGROUND_MIN_PIXELS`` pixels are neutral or when the estimate is
    darker than ``BACKGROUND_MIN`` in any channel. An image with no glass, lumen or fat space
    anywhere (a solid sheet of cells) has no background to read: its palest neutral tissue
    would be taken for it, and its stains read a little weaker. Glass with a colour cast
    (channels more than ``NEUTRAL_SPREAD`` apart) is not recognised, and OD stays read
    against white.
    """
    px = np.asarray(rgb).reshape(-1, 3)
    r, g, b = px[:, 0], px[:, 1], px[:, 2]  # channel by channel: 4x faster than max(axis=1)
    spread = np.maximum(np.maximum(r, g), b)
    spread -= np.minimum(np.minimum(r, g), b)
    neutral = px[spread <= NEUTRAL_SPREAD]
    if len(neutral) < BACKGROUND_MIN_PIXELS:
        return WHITE
    brightness = neutral.sum(axis=1, dtype=np.int32)
    top = neutral[brightness >= np.quantile(brightness, 1 - BACKGROUND_TOP)]
    colour = np.median(top, axis=0)
    if colour.min() < BACKGROUND_MIN:
        return WHITE
    return _as_vector(colour)


def estimate_stain_matrix(
    rgb: np.ndarray, *, min_od: float = 0.15, percentile: float = 1.0,
    background: Vector3 | None = None,
) -> tuple[Vector3, Vector3]:
    """Estimate a slide's haematoxylin and DAB OD vectors (Macenko et al. 2009).

    The OD (against ``background``) of stained pixels (summed OD > 3 * ``min_od``) is
    projected on the plane of its two main directions; the extreme angles (robust
    ``percentile``) are the two stains. The one that absorbs relatively more blue is DAB.
    Returns (haematoxylin, dab) unit vectors.
    """
    od = optical_density(np.asarray(rgb).reshape(-1, 3), background).astype(np.float64)
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


def angle_deg(a: Vector3, b: Vector3) -> float:
    """Angle in degrees between two OD vectors."""
    u, v = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _as_vector(v: np.ndarray) -> Vector3:
    return (float(v[0]), float(v[1]), float(v[2]))


def rounded_stains(haematoxylin: Vector3, dab: Vector3,
                   background: Vector3 = WHITE) -> dict[str, list[float]]:
    """Stain vectors and background rounded to what they mean (three decimals of a unit
    vector: about 0.06°, far finer than two slides' stains differ; a tenth of an 8-bit
    level)."""
    values = (haematoxylin, dab, background)
    decimals = (STAIN_DECIMALS, STAIN_DECIMALS, BACKGROUND_DECIMALS)
    return {k: [round(float(x), n) for x in v]
            for k, v, n in zip(STAIN_FIELDS, values, decimals, strict=True)}


def stain_estimates(haematoxylin: Vector3, dab: Vector3,
                    background: Vector3 = WHITE) -> dict[str, Any]:
    """What a weight-free scorer took from the slide, as its report shows it: the rounded
    stain vectors and background, and whether they are the defaults or were estimated."""
    default = (np.allclose(haematoxylin, DEFAULT_HAEMATOXYLIN) and np.allclose(dab, DEFAULT_DAB)
               and np.allclose(background, WHITE))
    return {"stain_vectors": {**rounded_stains(haematoxylin, dab, background),
                              "source": "default" if default else "slide"}}
