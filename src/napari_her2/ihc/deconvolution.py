"""Colour deconvolution of brightfield H-DAB pixels (Ruifrok & Johnston 2001).

Optical density (OD = -log10(I / 255)) per channel, its split into haematoxylin and DAB with
a stain matrix, and a per-slide estimate of the two stain vectors (Macenko et al. 2009). Used
by the ``dab-membrane`` scorer (:mod:`napari_her2.ihc.membrane`) and the stain check.
"""

from __future__ import annotations

import numpy as np

Vector3 = tuple[float, float, float]

#: H-DAB stain OD vectors (R, G, B) of Ruifrok & Johnston 2001, as QuPath uses them by default
DEFAULT_HAEMATOXYLIN: Vector3 = (0.651, 0.701, 0.210)
DEFAULT_DAB: Vector3 = (0.269, 0.568, 0.778)

#: OD of every 8-bit intensity; 0 is read as 1 so that OD stays finite (max log10(255) = 2.4)
OD_LUT = (-np.log10(np.maximum(np.arange(256), 1) / 255.0)).astype(np.float32)


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
    return OD_LUT[rgb]


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


def angle_deg(a: Vector3, b: Vector3) -> float:
    """Angle in degrees between two OD vectors."""
    u, v = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _as_vector(v: np.ndarray) -> Vector3:
    return (float(v[0]), float(v[1]), float(v[2]))
