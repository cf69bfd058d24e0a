"""The project's exception tree.

Every error a user can cause (a bad file, a missing resolution, a checkpoint that does not
match its card) is a :class:`Her2Error`. The CLI and the napari widget catch ``Her2Error``
once, at their edge, and show its one-line message; anything else is a bug.
"""

from __future__ import annotations

from pathlib import Path


class Her2Error(Exception):
    """Base class of all napari-her2 errors; ``str(err)`` is a one-line user message."""


class SlideReadError(Her2Error, OSError):
    """A slide file could not be opened or decoded."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class UnsupportedFormatError(SlideReadError):
    """The file exists and is readable, but is not a slide format napari-her2 reads."""


class MissingMppError(Her2Error, ValueError):
    """A slide has no microns-per-pixel in its metadata and none was given."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(
            f"{self.path}: the file gives no microns per pixel; pass the value with --mpp "
            "(CLI), mpp= (Python) or the widget's 'Slide µm/px' field"
        )


class CheckpointError(Her2Error, ValueError):
    """A model checkpoint is unsafe, unreadable, or does not match its model card."""


class ModelNotFoundError(Her2Error, KeyError):
    """No registered model or checkpoint has this name."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain line
        return str(self.args[0]) if self.args else ""


class OutputError(Her2Error, OSError):
    """An output file or folder could not be written."""


class ScoringCancelled(Her2Error):
    """Scoring was cancelled by the user."""


class DeviceError(Her2Error, ValueError):
    """The requested compute device (cuda, mps) is not available."""
