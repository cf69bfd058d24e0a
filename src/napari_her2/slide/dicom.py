"""DICOM WSI backend (optional: needs ``pydicom``; install ``napari-her2[dicom]``).

Reads a folder (or one file of a folder) holding a DICOM VL Whole Slide Microscopy series:
the VOLUME instances become the pyramid levels, LABEL / OVERVIEW / THUMBNAIL instances the
associated images. Supported: TILED_FULL organisation, one focal plane and optical path,
encapsulated JPEG baseline, JPEG 2000 or uncompressed RGB frames, one fragment per frame.
Not supported: TILED_SPARSE, several focal planes (z-stacks), JPEG-LS and other syntaxes.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SlideReadError, UnsupportedFormatError
from ._chunks import ChunkCache, ChunkDecodeError, ChunkedLevel, FileHandle
from ._model import SLIDE_LIMITS, Mpp, Slide, SlideResources, check_chunk_size, to_dask

_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
_ITEM_TAG = b"\xfe\xff\x00\xe0"
_SEQ_END_TAG = b"\xfe\xff\xdd\xe0"
_JPEG_SYNTAXES = {"1.2.840.10008.1.2.4.50"}
_J2K_SYNTAXES = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}
_RAW_SYNTAXES = {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"}


@dataclass
class _Instance:
    path: Path
    kind: str  # VOLUME, LABEL, OVERVIEW, THUMBNAIL
    shape: tuple[int, int]
    tile: tuple[int, int]
    syntax: str
    spacing_um: tuple[float, float] | None  # (y, x)
    pixel_offset: int
    n_frames: int
    magnification: float | None


def open_dicom(path: Path) -> Slide:
    """Open a DICOM WSI series as a :class:`napari_her2.slide.Slide`."""

    try:
        import pydicom  # noqa: F401
    except ImportError as err:
        raise UnsupportedFormatError(
            path, "DICOM needs the optional pydicom package: pip install 'napari-her2[dicom]'"
        ) from err
    folder = path if path.is_dir() else path.parent
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() == ".dcm" and f.is_file())
    instances = [i for i in (_read_instance(f) for f in files) if i is not None]
    volumes = sorted((i for i in instances if i.kind == "VOLUME"), key=lambda i: -i.shape[1])
    if not volumes:
        raise SlideReadError(path, "no DICOM whole-slide VOLUME image in the series")
    cache = ChunkCache()
    handles: list[FileHandle] = []
    readers = [_level(v, f"L{n}", cache, handles) for n, v in enumerate(volumes)]
    h0, w0 = readers[0].shape
    base = volumes[0]
    mpp = Mpp(base.spacing_um[1], base.spacing_um[0]) if base.spacing_um else None
    assoc = {
        i.kind.lower(): to_dask(_level(i, f"assoc-{i.kind.lower()}", None, handles), i.path)
        for i in instances
        if i.kind in ("LABEL", "OVERVIEW", "THUMBNAIL")
    }
    if "overview" in assoc:
        assoc["macro"] = assoc.pop("overview")
    return Slide(
        path=path,
        levels=[to_dask(r, v.path) for r, v in zip(readers, volumes)],
        downsamples=[(h0 / r.shape[0], w0 / r.shape[1]) for r in readers],
        mpp=mpp,
        mpp_source="dicom.PixelSpacing" if mpp else "none",
        magnification=base.magnification,
        vendor="dicom",
        tile_size=readers[0].chunk,
        compression=_syntax_name(base.syntax),
        associated=assoc,
        properties={"dicom.TransferSyntaxUID": base.syntax},
        readers=readers,
        _resources=SlideResources(lambda: _close_all(cache, handles)),
    )


def _close_all(cache: ChunkCache, handles: list[FileHandle]) -> None:
    cache.clear()
    for handle in handles:
        handle.close()


def _read_instance(f: Path) -> _Instance | None:
    import pydicom

    try:
        with open(f, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            pixel_offset = fh.tell()
    except Exception as err:  # noqa: BLE001 - pydicom raises many types on broken files
        raise SlideReadError(f, f"not a readable DICOM file ({err})") from err
    image_type = [str(t).upper() for t in ds.get("ImageType", [])]
    kind = next((k for k in ("VOLUME", "LABEL", "OVERVIEW", "THUMBNAIL") if k in image_type), None)
    if kind is None or "TotalPixelMatrixColumns" not in ds:
        return None
    if ds.get("SamplesPerPixel", 1) != 3 or ds.get("BitsAllocated", 8) != 8:
        raise SlideReadError(f, "not an 8-bit RGB DICOM whole-slide image")
    organisation = str(ds.get("DimensionOrganizationType", "TILED_FULL"))
    if organisation != "TILED_FULL" or int(ds.get("TotalPixelMatrixFocalPlanes", 1)) != 1:
        raise UnsupportedFormatError(f, f"DICOM {organisation} with several focal planes or "
                                     "sparse tiles is not supported")
    return _Instance(
        path=f,
        kind=kind,
        shape=(int(ds.TotalPixelMatrixRows), int(ds.TotalPixelMatrixColumns)),
        tile=(int(ds.Rows), int(ds.Columns)),
        syntax=str(ds.file_meta.TransferSyntaxUID),
        spacing_um=_spacing(ds),
        pixel_offset=pixel_offset,
        n_frames=int(ds.get("NumberOfFrames", 1)),
        magnification=_magnification(ds),
    )


def _spacing(ds) -> tuple[float, float] | None:
    try:
        spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    except (AttributeError, IndexError, KeyError):
        return None
    return (float(spacing[0]) * 1000.0, float(spacing[1]) * 1000.0)


def _magnification(ds) -> float | None:
    try:
        return float(ds.OpticalPathSequence[0].ObjectiveLensPower)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None


def _frame_table(inst: _Instance) -> list[tuple[int, int]]:
    """(offset, length) of each frame's fragment, walking the encapsulated items."""
    frames: list[tuple[int, int]] = []
    with open(inst.path, "rb") as fh:
        fh.seek(inst.pixel_offset)
        head = fh.read(12)
        if head[:4] != _PIXEL_DATA_TAG:
            raise SlideReadError(inst.path, "pixel data not found where expected")
        if head[8:12] != b"\xff\xff\xff\xff":  # native (uncompressed) pixel data
            frame_bytes = inst.tile[0] * inst.tile[1] * 3
            start = inst.pixel_offset + 12
            return [(start + k * frame_bytes, frame_bytes) for k in range(inst.n_frames)]
        first = True
        while True:
            tag, length = fh.read(4), fh.read(4)
            if len(length) < 4 or tag == _SEQ_END_TAG:
                break
            if tag != _ITEM_TAG:
                raise SlideReadError(inst.path, "damaged encapsulated pixel data")
            (n,) = struct.unpack("<I", length)
            if not first:
                frames.append((fh.tell(), n))
            first = False
            fh.seek(n, os.SEEK_CUR)
    if len(frames) != inst.n_frames:
        raise UnsupportedFormatError(
            inst.path, f"{len(frames)} fragments for {inst.n_frames} frames; "
            "frames split over several fragments are not supported"
        )
    return frames


def _level(inst: _Instance, key: str, cache: ChunkCache | None,
           handles: list[FileHandle]) -> ChunkedLevel:
    import imagecodecs

    frames = _frame_table(inst)
    th, tw = inst.tile
    nx = math.ceil(inst.shape[1] / tw)
    syntax = inst.syntax
    if syntax not in _JPEG_SYNTAXES | _J2K_SYNTAXES | _RAW_SYNTAXES:
        raise UnsupportedFormatError(inst.path, f"DICOM transfer syntax {syntax} is not supported")
    check_chunk_size(inst.path, (th, tw), f"DICOM level {key}")
    fh = FileHandle(inst.path, max_read=SLIDE_LIMITS.max_chunk_bytes)
    handles.append(fh)

    def decode(iy: int, ix: int) -> np.ndarray | None:
        k = iy * nx + ix
        if k >= len(frames):
            return None
        offset, length = frames[k]
        data = fh.pread(length, offset)
        try:
            if syntax in _JPEG_SYNTAXES:
                return imagecodecs.jpeg8_decode(data)
            if syntax in _J2K_SYNTAXES:
                return imagecodecs.jpeg2k_decode(data)
            return np.frombuffer(data, np.uint8).reshape(th, tw, 3)
        except Exception as err:  # noqa: BLE001 - codec errors have their own types
            raise ChunkDecodeError(f"{inst.path.name} frame {k} cannot be decoded: {err}") from err

    return ChunkedLevel(key=f"{inst.path.name}-{key}", shape=inst.shape, chunk=inst.tile,
                        decode=decode, cache=cache)


def _syntax_name(uid: str) -> str:
    if uid in _JPEG_SYNTAXES:
        return "JPEG"
    if uid in _J2K_SYNTAXES:
        return "JPEG2000"
    return "NONE"
