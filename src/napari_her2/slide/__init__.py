"""Slides: open any supported file as a lazy pyramid with its true microns per pixel.

:func:`open_slide` returns a :class:`Slide`: every pyramid level as a dask array whose blocks
are whole multiples of the file's own tiles, the microns per pixel and magnification from the
file's metadata, the level downsamples as they really are, and the associated images. The
backends (TIFF family, DICOM, PNG/JPEG, and the optional OpenSlide for the formats without a
native reader) sit behind :data:`FORMATS`; this package knows nothing
of models, scoring or napari.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

from ..errors import MissingMppError, UnsupportedFormatError
from ._model import (
    PLAUSIBLE_MPP,
    SLIDE_LIMITS,
    MissingMppWarning,
    Mpp,
    Slide,
    SlideLimitError,
    SlideLimits,
    add_lazy_levels,
)
from .formats import (
    FORMATS,
    SUFFIXES,
    SlideFormat,
    check_readable,
    detect_format,
    format_named,
    is_dicom_folder,
    is_slide_path,
)
from .writing import write_pyramid_tiff

__all__ = [
    "FORMATS",
    "PLAUSIBLE_MPP",
    "SLIDE_LIMITS",
    "SUFFIXES",
    "MissingMppWarning",
    "Mpp",
    "Slide",
    "BACKENDS",
    "SlideFormat",
    "SlideLimitError",
    "SlideLimits",
    "is_dicom_folder",
    "is_slide_path",
    "open_slide",
    "write_pyramid_tiff",
]


#: the values of ``open_slide(..., backend=)``
BACKENDS = (None, "native", "openslide")


def open_slide(
    path: str | os.PathLike,
    mpp: float | tuple[float, float] | None = None,
    backend: Literal["native", "openslide"] | None = None,
) -> Slide:
    """Open a slide (SVS, NDPI, OME-TIFF, generic tiled or strip TIFF, DICOM WSI folder, PNG,
    JPEG; with OpenSlide also MIRAX, Leica SCN, Ventana BIF, Hamamatsu VMS/VMU, SVSlide).

    mpp: level-0 microns per pixel; overrides the file's metadata. When neither gives one the
    slide still opens (with a :class:`MissingMppWarning`) and ``slide.mpp`` is None.

    backend: None picks by format (the native readers where there is one, OpenSlide for the
    formats in :data:`FORMATS` marked ``backend="openslide"``); "native" refuses a format
    without a native reader; "openslide" opens any file OpenSlide reads with it (needs
    ``napari-her2[openslide]``).

    Raises :class:`SlideReadError` (or its subclass UnsupportedFormatError) with a one-line
    message naming the file and the problem.
    """
    p = Path(path).expanduser()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be None, 'native' or 'openslide', not {backend!r}")
    if backend == "openslide":
        if not p.is_dir():
            check_readable(p)
        slide = format_named("openslide").open(p)
    else:
        fmt = detect_format(p)
        if backend == "native" and fmt.backend != "native":
            raise UnsupportedFormatError(
                p, f"no native reader for this format ({fmt.summary}): open it with "
                "backend='openslide' (pip install 'napari-her2[openslide]') or backend=None")
        slide = fmt.open(p)
    if len(slide.levels) == 1:
        add_lazy_levels(slide)
    if mpp is not None:
        user = slide.with_mpp(mpp)
        slide.close()  # the copy holds the file now
        slide = user
    elif slide.mpp is None:
        warnings.warn(str(MissingMppError(p)), MissingMppWarning, stacklevel=2)
    return slide
