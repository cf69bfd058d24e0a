"""Does this slide look like DAB immunohistochemistry at all?

The DAB channel of a colour deconvolution is not specific: eosin of an H&E slide, or a red
chromogen, also projects onto it, and the dab-membrane scorer would read that as HER2
staining. DAB is brown: the hue of the pixels the deconvolution calls DAB-positive lies
around 20-35° on real HER2 IHC (measured on breast and gastro-oesophageal scans and on
scikit-image's IHC sample), eosin around 300-340°, red fluorophores near 0°. A slide whose
DAB-positive tissue has a hue outside ``DAB_HUE_RANGE`` is flagged.

Fluorescence stored as RGB is flagged first, whatever its hue: brightfield glass is bright,
a fluorescence scan's background is dark, so a slide whose median brightness is below
``MIN_BRIGHTFIELD_VALUE`` is not brightfield IHC. Either way the report and the widget can
say that its HER2 scores mean nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .deconvolution import deconvolve

#: hue range (degrees) accepted as DAB brown: orange-brown to yellow-brown, neither red (a red
#: chromogen or fluorophore, < 10°) nor yellow-green
DAB_HUE_RANGE = (10.0, 50.0)
#: median HSV value (0-1) below which the image has a dark background: fluorescence
MIN_BRIGHTFIELD_VALUE = 0.5
#: OD above which a pixel counts as DAB-positive, and the share of tissue needed to judge
DAB_POSITIVE_OD = 0.2
MIN_POSITIVE_FRACTION = 0.01


@dataclass(frozen=True)
class StainCheck:
    """Outcome of the stain check (JSON-able via ``to_dict``)."""

    dab_hue_deg: float | None
    dab_positive_fraction: float
    looks_like_dab: bool
    warning: str | None

    def to_dict(self) -> dict:
        return asdict(self)


#: the check looks at most this many pixels (an evenly strided subset of larger images)
MAX_PIXELS = 2_000_000


def check_stain(rgb: np.ndarray, tissue: np.ndarray | None = None) -> StainCheck:
    """Stain check of a low-resolution RGB view of a slide (``tissue``: optional mask)."""
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / MAX_PIXELS))))
    if step > 1:
        rgb = rgb[::step, ::step]
        tissue = None if tissue is None else tissue[::step, ::step]
    rgb = np.ascontiguousarray(rgb[..., :3])
    brightness = float(np.median(rgb.max(axis=-1))) / 255.0
    if brightness < MIN_BRIGHTFIELD_VALUE:
        return StainCheck(None, 0.0, False, (
            f"the image is dark (median brightness {brightness:.2f}, brightfield glass is "
            "near 1): this looks like fluorescence, whose signal is not brown DAB "
            "immunohistochemistry; its HER2 scores are not meaningful"))
    _, dab = deconvolve(rgb)
    positive = dab > DAB_POSITIVE_OD
    if tissue is not None:
        positive &= tissue
    n_tissue = int(tissue.sum()) if tissue is not None else positive.size
    fraction = float(positive.sum() / max(n_tissue, 1))
    if fraction < MIN_POSITIVE_FRACTION:
        return StainCheck(None, fraction, True, None)
    hue = _mean_hue(rgb[positive])
    ok = _in_range(hue)
    warning = None if ok else (
        f"the stain the DAB channel picks up is not brown (mean hue {hue:.0f}°, DAB brown is "
        f"{DAB_HUE_RANGE[0]:.0f}-{DAB_HUE_RANGE[1]:.0f}°): this does not look like DAB immunohistochemistry (H&E or another chromogen?); "
        "its HER2 scores are not meaningful"
    )
    return StainCheck(round(hue, 1), round(fraction, 4), ok, warning)


def _mean_hue(pixels: np.ndarray) -> float:
    """Circular mean hue in degrees of (N, 3) uint8 RGB pixels."""
    x = pixels.astype(np.float64) / 255.0
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    # hue angle from the opponent-colour form (same ordering as HSV hue)
    angle = np.arctan2(np.sqrt(3.0) * (g - b), 2 * r - g - b)
    return float(np.degrees(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean())) % 360)


def _in_range(hue: float) -> bool:
    lo, hi = DAB_HUE_RANGE
    return lo <= hue <= hi
