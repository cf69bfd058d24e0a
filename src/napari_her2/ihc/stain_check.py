"""Does this slide look like DAB immunohistochemistry at all?

The DAB channel of a colour deconvolution is not specific: eosin of an H&E slide, or a red
chromogen, also projects onto it, and the scorers would read that as HER2 staining. DAB is
brown: the hue of the pixels the deconvolution calls DAB-positive lies around 20-40° on real
HER2 IHC (measured on breast and gastro-oesophageal scans and on scikit-image's IHC sample),
eosin around 300-340°, red chromogens and fluorophores near 0°. Dense, dark haematoxylin also
leaks into the DAB channel, and a field of HER2 0 tissue (no DAB) rich in nuclei has DAB-
positive pixels that are blue: those (``HAEMATOXYLIN_HUE_RANGE``) are left out, since every
IHC slide has haematoxylin. A slide whose remaining DAB-positive tissue has a mean hue in
``FOREIGN_HUE_RANGE`` (purple through pink to red) is flagged; weak DAB over grey-blue tissue
reads yellower than brown (up to about 60°) and passes. A green chromogen (none is used for
HER2) is not flagged. DAB is read against the view's own glass
(:func:`.deconvolution.estimate_background`): a grey scan's cast is not stain.

Fluorescence stored as RGB is flagged first, whatever its hue: brightfield glass is bright,
a fluorescence scan's background is dark, so a slide whose median brightness is below
``MIN_BRIGHTFIELD_VALUE`` is not brightfield IHC. Either way the report and the widget can
say that its HER2 scores mean nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .deconvolution import deconvolve, estimate_background

#: hue range (degrees) of DAB brown, orange-brown to yellow-brown (named in the warning)
DAB_HUE_RANGE = (10.0, 50.0)
#: hue range (degrees, wrapping through 0) of the stains the check exists to catch: the purple
#: and pink of haematoxylin-eosin, red chromogens and red fluorophores
FOREIGN_HUE_RANGE = (270.0, 10.0)
#: hue range (degrees) of haematoxylin's blue: DAB-positive pixels of this hue are dense nuclei
#: leaking into the DAB channel, not a chromogen
HAEMATOXYLIN_HUE_RANGE = (180.0, 270.0)
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
    _, dab = deconvolve(rgb, background=estimate_background(rgb))  # against the slide's glass
    positive = dab > DAB_POSITIVE_OD
    if tissue is not None:
        positive &= tissue
    hues = _hues(rgb[positive])
    hues = hues[~_in_range(hues, HAEMATOXYLIN_HUE_RANGE)]
    n_tissue = int(tissue.sum()) if tissue is not None else positive.size
    fraction = float(len(hues) / max(n_tissue, 1))
    if fraction < MIN_POSITIVE_FRACTION:
        return StainCheck(None, round(fraction, 4), True, None)
    hue = _circular_mean(hues)
    ok = not bool(_in_range(np.array([hue]), FOREIGN_HUE_RANGE)[0])
    warning = None if ok else (
        f"the stain the DAB channel picks up is not brown (mean hue {hue:.0f}°, the purple to "
        f"red of eosin or a red chromogen; DAB brown is {DAB_HUE_RANGE[0]:.0f}-"
        f"{DAB_HUE_RANGE[1]:.0f}°): this does not look like DAB immunohistochemistry (H&E or "
        "another chromogen?); its HER2 scores are not meaningful"
    )
    return StainCheck(round(hue, 1), round(fraction, 4), ok, warning)


def _hues(pixels: np.ndarray) -> np.ndarray:
    """Hue in degrees [0, 360) of (N, 3) uint8 RGB pixels, from the opponent-colour form (the
    ordering of HSV hue)."""
    x = pixels.astype(np.float64) / 255.0
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    return np.degrees(np.arctan2(np.sqrt(3.0) * (g - b), 2 * r - g - b)) % 360


def _circular_mean(hues: np.ndarray) -> float:
    """Circular mean in degrees [0, 360) of hues in degrees."""
    angle = np.radians(hues)
    return float(np.degrees(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean())) % 360)


def _in_range(hues: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    """Whether each hue (degrees) lies in ``limits`` (degrees; through 0 when the first limit
    is the larger)."""
    lo, hi = limits
    if lo <= hi:
        return (hues >= lo) & (hues < hi)
    return (hues >= lo) | (hues < hi)
