"""npe2 reader: a slide file becomes one multiscale RGB image layer scaled in microns.

``get_reader`` never raises: it returns None for paths it does not handle. Errors of a file it
claimed are shown to the user as a notification naming the file and the reason, and the
reader then returns an empty layer list.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

from .errors import Her2Error
from .slide import MissingMppWarning, is_dicom_folder, open_slide, slide_layer_kwargs

log = logging.getLogger(__name__)

SUFFIXES = (".svs", ".ndpi", ".tif", ".tiff", ".dcm")
#: environment variable giving the µm/px of slides whose metadata has none
MPP_ENV = "NAPARI_HER2_MPP"


def get_reader(path: str | list[str]) -> Callable | None:
    """Return the slide reader for a path napari-her2 handles, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, str | os.PathLike):
        return None
    p = Path(path)
    if p.is_dir():
        handled = is_dicom_folder(p)
    else:
        handled = p.suffix.lower() in SUFFIXES
    return read_slide_layers if handled else None


def read_slide_layers(path: str | list[str], mpp: float | None = None) -> list[tuple]:
    """Layer data for napari: [(levels, kwargs, "image")], or [] after notifying an error."""
    if isinstance(path, list):
        path = path[0]
    if mpp is None:
        mpp = _env_mpp()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MissingMppWarning)
            slide = open_slide(path, mpp=mpp)
    except Her2Error as err:
        _notify_error(str(err))
        return []
    for w in caught:
        if issubclass(w.category, MissingMppWarning):
            _notify_warning(
                f"{Path(path).name}: no microns per pixel in the file; distances are in pixels. "
                "Enter the value in the HER2 scoring widget ('Slide µm/px') before scoring."
            )
    kwargs = dict(slide_layer_kwargs(slide))
    data = slide.levels if kwargs["multiscale"] else slide.levels[0]
    return [(data, kwargs, "image")]


def _env_mpp() -> float | None:
    value = os.environ.get(MPP_ENV)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        _notify_warning(f"{MPP_ENV}={value!r} is not a number; ignored")
        return None


def _notify_error(message: str) -> None:
    log.error(message)
    try:
        from napari.utils.notifications import show_error
    except ImportError:
        return
    show_error(message)


def _notify_warning(message: str) -> None:
    log.warning(message)
    try:
        from napari.utils.notifications import show_warning
    except ImportError:
        return
    show_warning(message)
