"""napari-her2: score HER2 immunohistochemistry whole-slide images in napari."""

from __future__ import annotations

from ._version import __version__
from .errors import (
    CheckpointError,
    Her2Error,
    MissingMppError,
    ModelNotFoundError,
    SlideReadError,
    UnsupportedFormatError,
)
from .params import ScoringParams
from .pipeline import SlideReport, score_slide
from .slide import Slide, open_slide

__all__ = [
    "CheckpointError",
    "Her2Error",
    "MissingMppError",
    "ModelNotFoundError",
    "ScoringParams",
    "Slide",
    "SlideReport",
    "SlideReadError",
    "UnsupportedFormatError",
    "__version__",
    "open_slide",
    "score_slide",
]
