"""Tissue detection on a low-resolution level.

Brightfield tissue is coloured (stain saturation) and absorbs light (optical density); glass
is neither. A pixel is tissue when

* its saturation is above an Otsu threshold that is clamped between absolute bounds
  (``min_saturation`` is the floor below which a pixel is glass whatever Otsu says on a blank
  slide; ``max_saturation`` caps the threshold so that, on a field or core with no glass at
  all, Otsu cannot split pale tissue from strongly stained tissue) and, where the texture
  below is read, its optical density varies more than glass does (``glass_texture_od``: a
  scanner's tinted glass crosses the threshold in specks of noise), or
* its mean optical density is above ``tissue_od``: a pixel that absorbs that much light is
  not clear glass whatever the saturation (pale, greyish or bluish tissue, fields that are all
  tissue),

* or, where the mask is averaged from pixels fine enough to resolve nuclei (an image small
  enough to be read whole at 1 µm/px or finer: a field or a TMA core photographed whole), its
  optical density varies within the mask pixel by more than ``texture_od``: glass is uniform,
  while tissue, however pale, has nuclei against cytoplasm in every few microns. A pale core
  or field whose average colour is as faint as glass is found by its structure,

and it is not near-black (pen, scanner borders, the dark background of fluorescence). The
mask is cleaned by morphology whose sizes are given in microns, so it behaves the same at any
scan magnification.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..slide import Slide
from ..slide._model import SLIDE_LIMITS, SlideLimitError
from ..threads import decode_workers
from .deconvolution import OD_LUT

log = logging.getLogger(__name__)


#: pixels the Otsu threshold is computed from, and rows per band of the mask computation
OTSU_SAMPLE = 1_000_000
BAND_ROWS = 512
#: most pixels of a level read whole to see tissue texture (:func:`source_level`): a field
#: or a TMA core photographed whole, not a slide's ×20 level
TEXTURE_PIXELS = 16_000_000


@dataclass(frozen=True)
class TissueParams:
    """Tissue-mask settings (all sizes in microns)."""

    #: resolution the mask is computed at (µm/px); the nearest coarser-or-equal level is read
    mask_mpp: float = 8.0
    #: lowest saturation threshold (0-1) even when Otsu picks a lower one (blank slides)
    min_saturation: float = 0.04
    #: highest saturation threshold: on strongly stained slides Otsu splits stain from pale
    #: tissue rather than tissue from glass, so it is capped
    max_saturation: float = 0.06
    #: mean optical density (log10 units, over R, G, B) above which a pixel is tissue whatever
    #: its saturation: it transmits less than ~75% of the light, which clear glass never does
    tissue_od: float = 0.125
    #: standard deviation (to first order, :func:`_block_stats`) of the optical density over
    #: the scan pixels of one mask pixel above which it is tissue: glass measures about 0.003
    #: (sensor noise and JPEG) on the shared scans at 0.25-0.5 µm/px, the palest tissue
    #: 0.01-0.02 (nuclei against cytoplasm)
    texture_od: float = 0.01
    #: where the texture is read, a pixel coloured above the saturation threshold is tissue
    #: only if its optical density varies more than this: glass with a tint as saturated
    #: as the threshold (a scanner's bluish glass, 234, 233, 241: 0.034 against a threshold
    #: of 0.04-0.06) crosses it in scattered specks of sensor and JPEG noise, which the
    #: closing then joins into a mask over the whole glass; those specks vary by 0.002, like
    #: the rest of the glass, where faintly coloured tissue (fat septa) varies by 0.004-0.009
    glass_texture_od: float = 0.004
    #: coarsest scan pixel (µm) whose variation is read as texture: it must resolve nuclei
    texture_um: float = 1.0
    #: pixels darker than this value (0-1, HSV V) are not tissue (pen marks, borders)
    min_value: float = 0.12
    #: closing radius that joins stained fragments of one piece of tissue
    closing_um: float = 24.0
    #: pieces smaller than this area (µm²) are dropped (dust, debris); in an image smaller
    #: than four times that area (a photographed field), a piece a quarter of the image is
    #: kept whatever its size: what fills the frame is what was meant to be scored
    min_object_um2: float = 20_000.0
    #: holes smaller than this area (µm²) are filled (lumina, fat cells)
    max_hole_um2: float = 40_000.0


@dataclass(frozen=True)
class TissueMask:
    """Boolean tissue mask with its own scale.

    downsample: (y, x) level-0 pixels per mask pixel; mpp: µm per mask pixel (y, x);
    thumbnail: the RGB image the mask was computed from (same shape), when known;
    texture: the spread of optical density within each mask pixel (same shape), when the
    mask was averaged from pixels fine enough to see it (``TissueParams.texture_um``).
    """

    mask: np.ndarray
    downsample: tuple[float, float]
    mpp: tuple[float, float]
    thumbnail: np.ndarray | None = None
    texture: np.ndarray | None = None

    @property
    def fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


def mask_level(slide: Slide, mask_mpp: float) -> int:
    """The pyramid level used for the mask: coarsest whose resolution is <= mask_mpp."""
    mpp0 = slide.require_mpp()
    return slide.best_level_for_downsample(mask_mpp / max(mpp0.x, mpp0.y))


def source_level(slide: Slide, params: TissueParams) -> int:
    """The level the mask is averaged from: the coarsest whose pixels resolve nuclei
    (``params.texture_um``) when it holds at most ``TEXTURE_PIXELS`` pixels, so that pale
    tissue is found by its texture; otherwise :func:`mask_level`'s."""
    coarse = mask_level(slide, params.mask_mpp)
    mpp0 = slide.require_mpp()
    for i in range(coarse, -1, -1):
        dy, dx = slide.downsamples[i]
        if max(mpp0.y * dy, mpp0.x * dx) <= params.texture_um:
            h, w = slide.levels[i].shape[:2]
            return i if h * w <= TEXTURE_PIXELS else coarse
    return coarse


def bounded_level(slide: Slide, level: int) -> int:
    """``level``, or the first coarser one read whole within ``SLIDE_LIMITS.max_mask_pixels``;
    SlideLimitError when even the coarsest is larger (a huge single-level image)."""
    limit = SLIDE_LIMITS.max_mask_pixels
    for i in range(level, slide.level_count):
        h, w = slide.levels[i].shape[:2]
        if h * w <= limit:
            return i
    h, w = slide.levels[-1].shape[:2]
    raise SlideLimitError(
        slide.path, f"no level is small enough for tissue detection (the smallest is {w} x {h} "
        f"px, the limit {limit:.3g} px): save the image as a pyramidal TIFF")


def detect_tissue(slide: Slide, params: TissueParams = TissueParams()) -> TissueMask:
    """Tissue mask of a slide computed on a low-resolution level."""
    level = bounded_level(slide, source_level(slide, params))
    h, w = slide.levels[level].shape[:2]
    rgb = slide.read_region(level, 0, 0, h, w, strict=False, workers=decode_workers())
    dy, dx = slide.downsamples[level]
    mpp0 = slide.require_mpp()
    read_um = max(mpp0.x * dx, mpp0.y * dy)
    factor = int(params.mask_mpp // read_um)
    texture = None
    if factor >= 2:  # no level near the mask resolution: average blocks of pixels
        rgb, texture = _block_stats(rgb, factor, spread=read_um <= params.texture_um)
        dy, dx = dy * factor, dx * factor
    mpp = (mpp0.y * dy, mpp0.x * dx)
    mask = tissue_mask_from_rgb(rgb, float(np.sqrt(mpp[0] * mpp[1])), params, texture)
    log.info("tissue: level %d (%s px), %.1f%% tissue", level, rgb.shape[:2], 100 * mask.mean())
    return TissueMask(mask=mask, downsample=(dy, dx), mpp=mpp, thumbnail=rgb, texture=texture)


def tissue_mask_from_rgb(rgb: np.ndarray, mpp: float, params: TissueParams = TissueParams(),
                         texture: np.ndarray | None = None) -> np.ndarray:
    """Tissue mask of an RGB image whose pixels are ``mpp`` microns wide.

    ``texture``: the spread of optical density within each pixel (the same shape), from
    finer pixels (:func:`detect_tissue`); pixels where it exceeds ``params.texture_od`` are
    tissue.
    """
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / OTSU_SAMPLE)))
    sample, _ = _saturation_value(rgb[::step, ::step])
    threshold = min(max(_otsu(sample), params.min_saturation), params.max_saturation)
    mask = np.empty(rgb.shape[:2], bool)
    for y in range(0, rgb.shape[0], BAND_ROWS):  # bands keep float temporaries small
        band = rgb[y : y + BAND_ROWS, :, :3]
        sat, val = _saturation_value(band)
        coloured = sat > threshold
        dense = _mean_od(band) > params.tissue_od
        if texture is not None:
            spread = texture[y : y + BAND_ROWS]
            dense |= spread > params.texture_od
            coloured &= spread > params.glass_texture_od
        mask[y : y + BAND_ROWS] = (coloured | dense) & (val > params.min_value)
    radius = max(1, int(round(params.closing_um / mpp)))
    disk = _disk(radius)  # closing whose erosion sees tissue beyond the edge: no shrinking
    mask = ndi.binary_erosion(ndi.binary_dilation(mask, disk), disk, border_value=1)
    mask = _drop_small(mask, min(params.min_object_um2 / mpp**2, mask.size / 4))
    holes = ndi.binary_fill_holes(mask) & ~mask
    mask |= holes & ~_drop_small(holes, params.max_hole_um2 / mpp**2)
    return mask


def _block_stats(rgb: np.ndarray, factor: int, spread: bool = True
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Blocks of ``factor`` x ``factor`` pixels: their mean colour (uint8) and, with
    ``spread``, the spread of their pixels' optical density (float32; else None), a band of
    blocks at a time.

    The spread is the standard deviation of each pixel's mean intensity over R, G, B divided
    by the block's mean intensity and by ln 10: the standard deviation of the optical density
    to first order (d OD = -dI / (I ln 10)), from integer sums, without a logarithm per pixel.
    """
    h, w = rgb.shape[0] // factor * factor, rgb.shape[1] // factor * factor
    nw, k = w // factor, factor * factor
    mean = np.empty((h // factor, nw, 3), np.uint8)
    out = np.empty((h // factor, nw), np.float32) if spread else None

    def block_sums(x: np.ndarray, dtype: type) -> np.ndarray:  # rows first, then columns
        n = x.shape[0] // factor
        rows = x.reshape(n, factor, *x.shape[1:]).sum(axis=1, dtype=dtype)
        return rows.reshape(n, nw, factor, *x.shape[2:]).sum(axis=2)

    band_blocks = max(1, BAND_ROWS // factor)
    for b in range(0, h // factor, band_blocks):
        band = rgb[b * factor : min(h, (b + band_blocks) * factor), :w, :3]
        n = band.shape[0] // factor
        mean[b : b + n] = block_sums(band, np.uint32) // k
        if out is None:
            continue
        grey = band[..., 0].astype(np.uint16)
        grey += band[..., 1]
        grey += band[..., 2]
        s1 = block_sums(grey, np.uint64).astype(np.float64)
        squares = grey.astype(np.uint32)
        squares *= squares
        s2 = block_sums(squares, np.uint64).astype(np.float64)
        m = s1 / k
        sd = np.sqrt(np.maximum(s2 / k - m * m, 0.0))
        out[b : b + n] = sd / (np.maximum(m, 1.0) * np.log(10))
    return mean, out


def _saturation_value(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV saturation and value in [0, 1], without a float copy of the whole image."""
    vmax = rgb[..., :3].max(axis=-1)
    vmin = rgb[..., :3].min(axis=-1)
    sat = (vmax - vmin).astype(np.float32)
    sat /= np.maximum(vmax, 1).astype(np.float32)
    val = vmax.astype(np.float32)
    val /= 255.0
    return sat, val


#: optical density of each 8-bit intensity (0 read as 1 so that it stays finite)
def _mean_od(rgb: np.ndarray) -> np.ndarray:
    """Mean optical density over R, G, B of uint8 pixels (float32)."""
    if rgb.dtype != np.uint8:
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    od = OD_LUT[rgb[..., 0]] + OD_LUT[rgb[..., 1]]
    od += OD_LUT[rgb[..., 2]]
    od /= 3.0
    return od


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu threshold of values in [0, 1]."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    if hist.sum() == 0:
        return 1.0
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between))])


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (yy**2 + xx**2) <= radius**2


def _drop_small(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    """Connected components of at least ``min_pixels`` pixels."""
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]
