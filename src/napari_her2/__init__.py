"""napari-her2: score HER2 immunohistochemistry whole-slide images in napari."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    CheckpointError,
    Her2Error,
    MissingMppError,
    ModelNotFoundError,
    SlideReadError,
    UnsupportedFormatError,
)
from .pipeline import ScoringParams, SlideReport, score_slide
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
