"""Does this slide look like DAB immunohistochemistry at all?

The DAB channel of a colour deconvolution is not specific: eosin of an H&E slide, or a red
chromogen, also projects onto it, and the dab-membrane scorer would read that as HER2
staining. DAB is brown: the hue of the pixels the deconvolution calls DAB-positive lies
around 15-35°, eosin around 300-340°. A slide whose DAB-positive tissue has another hue is
flagged, so the report and the widget can say that its HER2 scores mean nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .stain import deconvolve

#: hue range (degrees, wrapping through 0) accepted as DAB brown
DAB_HUE_RANGE = (345.0, 60.0)
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
    _, dab = deconvolve(np.ascontiguousarray(rgb[..., :3]))
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
        "15-35°): this does not look like DAB immunohistochemistry (H&E or another chromogen?); "
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
    return hue >= lo or hue <= hi
