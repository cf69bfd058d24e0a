"""The supported slide formats, in one table read by ``open_slide``, the napari reader and batch.

Each :class:`SlideFormat` names its file suffixes, how to recognise its first bytes and the
backend that opens it. Adding a format is adding a row to :data:`FORMATS`. Rows whose backend
is ``"openslide"`` need the optional OpenSlide (``napari-her2[openslide]``); their suffixes
name the format whatever the file's bytes (a MIRAX ``.mrxs`` is a text index, an SVSlide a
database), and a Ventana BIF named ``.tif`` is recognised by its XMP.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import SlideReadError, UnsupportedFormatError
from ._model import Slide


@dataclass(frozen=True)
class SlideFormat:
    """One family of slide files and the backend that opens it."""

    name: str
    suffixes: tuple[str, ...]
    matches: Callable[[bytes], bool]
    open: Callable[[Path], Slide]
    summary: str
    #: "native" (this package decodes it) or "openslide" (the optional OpenSlide backend)
    backend: str = "native"
    #: a closer look at a file whose head ``matches`` (reads more of the file)
    sniff: Callable[[Path, bytes], bool] | None = None
    #: a file with one of ``suffixes`` is this format, whatever its first bytes
    by_suffix: bool = False


def _open_tiff(p: Path) -> Slide:
    from .tiff import open_tiff

    return open_tiff(p)


def _open_dicom(p: Path) -> Slide:
    from .dicom import open_dicom

    return open_dicom(p)


def _open_image(p: Path) -> Slide:
    from .image import open_image

    return open_image(p)


def _open_openslide(p: Path) -> Slide:
    from .openslide_backend import open_openslide

    return open_openslide(p)


def _is_bif(p: Path, head: bytes) -> bool:
    from .openslide_backend import is_ventana_bif

    return is_ventana_bif(p, head)


def _is_tiff(head: bytes) -> bool:
    from .tiff import TIFF_MAGIC

    return head[:4] in TIFF_MAGIC


def _is_png(head: bytes) -> bool:
    from .image import PNG_MAGIC

    return head.startswith(PNG_MAGIC)


def _is_jpeg(head: bytes) -> bool:
    from .image import JPEG_MAGIC

    return head.startswith(JPEG_MAGIC)


FORMATS: tuple[SlideFormat, ...] = (
    SlideFormat("openslide", (".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide"), _is_tiff,
                _open_openslide, "3DHistech MIRAX, Leica SCN, Ventana/Roche BIF (also as .tif), "
                "Hamamatsu VMS/VMU, Sakura SVSlide",
                backend="openslide", sniff=_is_bif, by_suffix=True),
    SlideFormat("tiff", (".svs", ".ndpi", ".tif", ".tiff"), _is_tiff, _open_tiff,
                "Aperio SVS, Hamamatsu NDPI, OME-TIFF, generic tiled or strip TIFF"),
    SlideFormat("dicom", (".dcm",), lambda head: head[128:132] == b"DICM", _open_dicom,
                "DICOM WSI series (a folder of .dcm files)"),
    SlideFormat("png", (".png",), _is_png, _open_image, "PNG image (patch, field, TMA core)"),
    SlideFormat("jpeg", (".jpg", ".jpeg"), _is_jpeg, _open_image,
                "JPEG image (patch, field, TMA core)"),
)

#: every suffix a slide file may have (the napari reader's patterns, batch's folder listing)
SUFFIXES: tuple[str, ...] = tuple(s for f in FORMATS for s in f.suffixes)


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """True for a readable folder holding DICOM (.dcm) files."""
    p = Path(path)
    try:
        return p.is_dir() and any(f.suffix.lower() == ".dcm" for f in p.iterdir())
    except OSError:
        return False


def is_slide_path(path: str | os.PathLike) -> bool:
    """True for a path whose name says it is a slide this package opens (no bytes read)."""
    p = Path(path)
    return is_dicom_folder(p) or p.name.lower().endswith(SUFFIXES)


def detect_format(p: Path) -> SlideFormat:
    """The format of ``p`` from its first bytes (a folder: DICOM), or a one-line error."""
    if p.is_dir():
        if is_dicom_folder(p):
            return format_named("dicom")
        raise UnsupportedFormatError(p, "is a folder without DICOM (.dcm) files")
    head = check_readable(p)
    by_suffix = next((f for f in FORMATS if f.by_suffix and p.name.lower().endswith(f.suffixes)),
                     None)
    if by_suffix is not None:
        return by_suffix
    for fmt in FORMATS:
        if fmt.matches(head) and (fmt.sniff is None or fmt.sniff(p, head)):
            if fmt.name == "tiff":
                from .tiff import check_first_ifd

                check_first_ifd(p, head)
            return fmt
    raise UnsupportedFormatError(
        p, "not a supported slide (unrecognised file header; TIFF family, DICOM, PNG or JPEG; "
        "with OpenSlide also " + " ".join(format_named("openslide").suffixes) + ")")


def format_named(name: str) -> SlideFormat:
    return next(f for f in FORMATS if f.name == name)


def check_readable(p: Path) -> bytes:
    """The first bytes of a readable regular file, or a one-line error."""
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise SlideReadError(p, "no such file or folder") from None
    except OSError as err:
        raise SlideReadError(p, f"cannot be read ({err.strerror or err})") from err
    if not stat.S_ISREG(mode):
        raise SlideReadError(p, "not a regular file (a pipe, device or socket is never read)")
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError as err:
        raise SlideReadError(p, f"cannot be read ({err.strerror or err})") from err
    if not head:
        raise SlideReadError(p, "the file is empty")
    return head
