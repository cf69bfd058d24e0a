"""Small helpers the slide tests share."""

from __future__ import annotations

import warnings

import numpy as np

from napari_her2 import open_slide
from napari_her2.slide import MissingMppWarning, Slide


def open_quiet(path, **kw) -> Slide:
    """open_slide without the missing-mpp warning (for tests about something else)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMppWarning)
        return open_slide(path, **kw)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
