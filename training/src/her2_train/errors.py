"""Errors of the training package: napari-her2's :class:`Her2Error` with one-line messages."""

from __future__ import annotations

from napari_her2.errors import Her2Error


class TrainError(Her2Error):
    """Training could not run as configured (bad option, empty split, failed resume)."""


class DatasetError(TrainError, ValueError):
    """A dataset folder, label file or annotation file cannot be used."""


class LabelError(DatasetError):
    """A label cannot be read as a HER2 score (0, 1+, 2+, 3+)."""
