"""Where the tumour is, from haematoxylin morphology alone (no HER2 intensity needed).

A HER2 0 carcinoma has no DAB at all, so tumour must be found from the counterstain. The
detector works on the haematoxylin optical density of a colour deconvolution (with the slide's
own stain vectors when they were estimated) and decides in three steps, every size in microns:

1. **nuclei**: smoothed haematoxylin above an absolute floor *and* above its local background
   (so bluish stroma or a counterstain cast is not a nucleus);
2. **epithelial nuclei**: each nucleus object is measured (area and width, from its second
   moments). Carcinoma and epithelial nuclei are large, plump and convex (area between
   ``min_area_um2``, about 8 µm across, and ``max_area_um2``; width >= ``min_width_um``; area
   at least ``min_fill`` of its moment ellipse). Lymphocytes (about 6-7 µm, 30-40 µm²) are too
   small, fibroblast and smooth-muscle nuclei of stroma are too thin, fat has no nuclei;
3. **tumour area**: the local density of epithelial-nucleus pixels in a window of a few
   cells; where it reaches ``min_density`` the area is tumour/epithelium, cytoplasm around
   the nuclei included. DAB plays no part: stained stroma or a stained normal duct must not
   become tumour because it is brown, and an unstained (HER2 0) carcinoma must be found.

What it cannot do: tell invasive carcinoma from in-situ carcinoma or normal epithelium (all
are plump-nucleated epithelium), or a solid sheet of lymphocytes whose nuclei merge into large
objects from tumour. Those limits are written in the scorer's model card.

The small array helpers used by the scorer (smoothing, box means, block reduction) live here
too, since both modules work on stacks of tiles ``(N, H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

#: shrink factor of the coarse grid on which nuclei are found; a speed choice, not a threshold:
#: it only has to stay well below a nucleus' size
COARSE = 2


@dataclass(frozen=True)
class TumourParams:
    """Thresholds of the haematoxylin-morphology tumour detector (lengths in µm, OD in log10)."""

    #: Gaussian smoothing before nuclei are thresholded (µm)
    nucleus_sigma_um: float = 1.0
    #: haematoxylin OD above which a (smoothed) pixel may be nucleus
    nucleus_od: float = 0.02
    #: side of the window whose mean haematoxylin a nucleus must stand out from (µm)
    nucleus_background_um: float = 12.0
    #: how far (OD) a nucleus rises above that background
    nucleus_contrast_od: float = 0.015
    #: how far (µm) a nucleus may extend beyond its dark core
    nucleus_grow_um: float = 2.0
    #: smallest area of an epithelial/tumour nucleus (µm²): a disc about 8 µm across, larger
    #: than a lymphocyte (6-7 µm)
    min_area_um2: float = 25.0
    #: largest area of one nucleus (µm²); larger objects are merged clumps or stroma strands
    max_area_um2: float = 250.0
    #: smallest fill of an epithelial nucleus: its area over that of its moment ellipse
    #: (nuclei are convex, about 1; branching strands of stroma are far less)
    min_fill: float = 0.7
    #: smallest width (minor axis, µm) of an epithelial nucleus; stromal nuclei are 2-3 µm wide
    min_width_um: float = 3.5
    #: side of the window in which epithelial density is measured (µm): a few cells
    window_um: float = 24.0
    #: local fraction of epithelial-nucleus pixels that makes a pixel tumour
    min_density: float = 0.12

    def __post_init__(self) -> None:
        if min(self.min_area_um2, self.min_width_um, self.window_um) <= 0:
            raise ValueError("tumour sizes must be positive")
        if not 0 < self.min_density < 1:
            raise ValueError("min_density must be in (0, 1)")


# --------------------------------------------------------------------------- array helpers


def gaussian_kernel(sigma_px: float, truncate: float = 3.0) -> np.ndarray:
    """Normalised float32 Gaussian taps of radius ``int(truncate * sigma + 0.5)`` (scipy's)."""
    radius = int(truncate * sigma_px + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def smooth_plane(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """One (H, W) float32 plane convolved with a symmetric ``kernel`` along both axes.

    Edges repeat the nearest pixel (scipy's ``mode="nearest"``). Symmetric taps are added in
    pairs and the plane stays in the CPU cache, which makes this faster than scipy's line
    buffers; the sums are float32, within a few float32 rounding steps of scipy's float64.
    """
    r = len(kernel) // 2
    hh, ww = x.shape
    padded = np.pad(x, r, mode="edge")
    cols = padded[r : r + hh] * kernel[r]
    for j in range(1, r + 1):
        pair = padded[r - j : r - j + hh] + padded[r + j : r + j + hh]
        pair *= kernel[r + j]
        cols += pair
    out = cols[:, r : r + ww] * kernel[r]
    for j in range(1, r + 1):
        pair = cols[:, r - j : r - j + ww] + cols[:, r + j : r + j + ww]
        pair *= kernel[r + j]
        out += pair
    return out


def smooth(x: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing (truncated at 3 sigma) in the image plane of a (N, H, W) stack."""
    kernel = gaussian_kernel(sigma_px)
    out = np.empty(x.shape, np.float32)
    for i, plane in enumerate(x):
        out[i] = smooth_plane(plane.astype(np.float32, copy=False), kernel)
    return out


def box_mean(x: np.ndarray, size_px: float) -> np.ndarray:
    """Local mean of a (N, H, W) image or mask in a square window (in-plane only)."""
    k = max(1, int(round(size_px)))
    return ndi.uniform_filter(x.astype(np.float32, copy=False), size=(1, k, k), mode="nearest")


def block_reduce(x: np.ndarray, factor: int, how: str = "mean") -> np.ndarray:
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


def expand(x: np.ndarray, factor: int, shape: tuple[int, ...]) -> np.ndarray:
    """Undo :func:`block_reduce`: repeat each pixel ``factor`` times and crop to ``shape``."""
    if factor == 1:
        return x
    n, hh, ww = x.shape
    big = np.empty((n, hh, factor, ww * factor), x.dtype)
    big[:, :, 0] = np.repeat(x, factor, axis=2)
    big[:, :, 1:] = big[:, :, :1]
    return big.reshape(n, hh * factor, ww * factor)[:, : shape[1], : shape[2]]


def count_expanded(x: np.ndarray, factor: int, shape: tuple[int, ...]) -> np.ndarray:
    """``count(expand(x, factor, shape))`` without expanding: each coarse pixel counts as
    many full-size pixels as it covers (fewer on a cropped last row or column)."""
    if factor == 1 or (shape[1] % factor == 0 and shape[2] % factor == 0):
        return count(x) * factor**2
    rows = np.minimum(factor, shape[1] - factor * np.arange(x.shape[1]))
    cols = np.minimum(factor, shape[2] - factor * np.arange(x.shape[2]))
    return np.einsum("nij,i,j->n", x.astype(np.float64), rows.astype(np.float64),
                     cols.astype(np.float64))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a (N, H, W) mask by a (2 radius + 1) square in-plane.

    The same as ``ndi.maximum_filter(mask, size=(1, k, k))`` for boolean masks, computed as
    shifted ORs along each axis.
    """
    rows = mask.copy()
    for s in range(1, radius + 1):
        rows[:, s:] |= mask[:, :-s]
        rows[:, :-s] |= mask[:, s:]
    out = rows.copy()
    for s in range(1, radius + 1):
        out[:, :, s:] |= rows[:, :, :-s]
        out[:, :, :-s] |= rows[:, :, s:]
    return out


def count(mask: np.ndarray) -> np.ndarray:
    """True pixels per tile of a (N, H, W) mask (float64, exact)."""
    return np.count_nonzero(mask.reshape(mask.shape[0], -1), axis=1).astype(np.float64)


def plane_structure() -> np.ndarray:
    """4-connectivity within each tile, none across the tiles of a stack."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndi.generate_binary_structure(2, 1)
    return structure


# --------------------------------------------------------------------------- detection


def nucleus_contrast(h: np.ndarray, p: TumourParams, px_um: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed haematoxylin OD of ``h`` (N, H, W) and its rise above the local background
    (``px_um`` µm per pixel), the two planes nuclei are found on."""
    hs = smooth(h, p.nucleus_sigma_um / px_um)
    return hs, hs - box_mean(hs, p.nucleus_background_um / px_um)


def nucleus_regions(h: np.ndarray, p: TumourParams, px_um: float,
                    planes: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[np.ndarray, int, np.ndarray]:
    """Labelled candidate nucleus regions of haematoxylin OD ``h`` (N, H, W) on whatever grid
    it is given (``px_um`` µm per pixel), their count, and which have a core.

    Every region with a core is one nucleus object (see :func:`nuclei`); touching nuclei stay
    one region here (:mod:`.nuclei` splits them). ``planes``: :func:`nucleus_contrast` of
    ``h`` when the caller has it already.
    """
    hs, contrast = planes if planes is not None else nucleus_contrast(h, p, px_um)
    above = hs >= p.nucleus_od
    core = above & (contrast >= p.nucleus_contrast_od)
    extent = above & (contrast >= p.nucleus_contrast_od / 2)
    extent &= dilate(core, int(round(p.nucleus_grow_um / px_um)))
    labels, n = ndi.label(extent, structure=plane_structure())
    has_core = np.zeros(n + 1, bool)
    has_core[labels[core]] = True
    has_core[0] = False
    return labels, n, has_core


def _nucleus_objects(h: np.ndarray, p: TumourParams, mpp: float
                     ) -> tuple[np.ndarray, int, np.ndarray]:
    """:func:`nucleus_regions` on the coarse grid (``COARSE`` times ``mpp``)."""
    return nucleus_regions(block_reduce(h, COARSE), p, mpp * COARSE)


def nuclei(h: np.ndarray, p: TumourParams, mpp: float) -> np.ndarray:
    """Nucleus mask of haematoxylin OD ``h`` (N, H, W), on the coarse grid (N, H/2, W/2).

    A nucleus' core rises ``nucleus_contrast_od`` above its local background; its extent is
    the connected region around the core that stays half as far above that background (a
    hysteresis threshold) and within ``nucleus_grow_um`` of the core, so a pale vesicular
    nucleus keeps its real size, not only its darkest chromatin.
    """
    labels, _, has_core = _nucleus_objects(h, p, mpp)
    return has_core.take(labels)


def _plump(labels: np.ndarray, n: int, p: TumourParams, px_um: float) -> np.ndarray:
    """Per label (n + 1,): whether the object is large and plump enough for epithelium.

    Width is the minor axis of the object's moment ellipse (4 sqrt(smaller eigenvalue of the
    coordinate covariance)); only labelled pixels are visited.
    """
    _, yy, xx = np.nonzero(labels)
    idx = labels[labels > 0]
    y, x = yy.astype(np.float64), xx.astype(np.float64)
    sums = [np.bincount(idx, weights=w, minlength=n + 1)
            for w in (None, y, x, y * y, x * x, y * x)]
    area = np.maximum(sums[0], 1)
    my, mx = sums[1] / area, sums[2] / area
    vyy = sums[3] / area - my**2 + 1 / 12  # + pixel's own variance
    vxx = sums[4] / area - mx**2 + 1 / 12
    vxy = sums[5] / area - my * mx
    root = np.sqrt(((vyy - vxx) / 2) ** 2 + vxy**2)
    minor = 4 * np.sqrt(np.maximum((vyy + vxx) / 2 - root, 0))
    major = 4 * np.sqrt((vyy + vxx) / 2 + root)
    fill = sums[0] / np.maximum(np.pi / 4 * major * minor, 1e-9)
    area_um2 = sums[0] * px_um**2
    keep = (area_um2 >= p.min_area_um2) & (area_um2 <= p.max_area_um2)
    keep &= (minor * px_um >= p.min_width_um) & (fill >= p.min_fill)
    keep[0] = False
    return keep


def epithelial_nuclei(mask: np.ndarray, p: TumourParams, px_um: float) -> np.ndarray:
    """Nucleus objects of ``mask`` (N, H, W) that are large and plump enough for epithelium.

    ``px_um`` is the side of one pixel of ``mask`` in µm.
    """
    labels, n = ndi.label(mask, structure=plane_structure())
    if n == 0:
        return np.zeros_like(mask)
    return _plump(labels, n, p, px_um).take(labels)


def tumour_mask(h: np.ndarray, p: TumourParams, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    """Tumour/epithelium mask (N, H, W) and nucleus mask (coarse grid, see :func:`nuclei`)
    of haematoxylin OD ``h`` (N, H, W); ``expand(nuclei, COARSE, h.shape)`` is full size.

    Morphology only: the density of epithelial nuclei (:func:`epithelial_nuclei`'s criteria)
    in a window of ``window_um``. The nucleus objects are labelled once: each one with a core
    is measured as it stands.
    """
    labels, n, has_core = _nucleus_objects(h, p, mpp)
    nuc = has_core.take(labels)
    epi = (_plump(labels, n, p, mpp * COARSE) & has_core).take(labels)
    f = 2 * COARSE
    density = box_mean(block_reduce(epi, f // COARSE), p.window_um / mpp / f)
    return expand(density >= p.min_density, f, h.shape), nuc
