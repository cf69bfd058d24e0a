"""napari-her2: score HER2 immunohistochemistry whole-slide images in napari.

The public names below are imported on first use, so that napari opening a slide through
this plugin's reader does not load the scoring stack (torch) first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    CheckpointError,
    Her2Error,
    MissingMppError,
    ModelNotFoundError,
    SlideReadError,
    UnsupportedFormatError,
)

if TYPE_CHECKING:
    from .params import ScoringParams
    from .run.pipeline import SlideReport, score_slide
    from .slide import Slide, open_slide

#: public name -> module that defines it (imported on first access)
_LAZY = {
    "ScoringParams": ".params",
    "SlideReport": ".run.pipeline",
    "score_slide": ".run.pipeline",
    "Slide": ".slide",
    "open_slide": ".slide",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
