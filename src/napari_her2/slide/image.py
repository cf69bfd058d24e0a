"""Plain-image backend: PNG and JPEG patches, fields and TMA cores as slides.

The image is decoded once when opened (after its header says how large it is, so that an
absurd size is refused before any pixel is decoded); its 2x reductions are computed at the
same time, since the pixels are in memory anyway. Resolution comes from the PNG ``pHYs`` chunk or the JPEG JFIF
density when they hold a microscope-scale value; 72/96 dpi screen defaults are ignored, so
most plain images need ``mpp`` from the user.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import SlideReadError
from ._chunks import ChunkedLevel
from ._model import (
    MIN_PYRAMID_SIDE,
    SLIDE_LIMITS,
    Mpp,
    Slide,
    SlideLimitError,
    halve,
    plausible_mpp,
    to_dask,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
#: dask block side of a decoded plain image
_BLOCK = 1024


def open_image(p: Path) -> Slide:
    """Open a PNG or JPEG file as a single-level :class:`Slide`."""
    data = _read(p)
    is_png = data.startswith(PNG_MAGIC)
    (h, w), mpp = _png_header(p, data) if is_png else _jpeg_header(p, data)
    limit = SLIDE_LIMITS.max_plain_image_pixels
    if h * w > limit:
        raise SlideLimitError(p, f"the image is too large to open as a plain image ({w}x{h} px, "
                              f"limit {limit} px): convert it to a tiled pyramidal TIFF")
    rgb = _decode(p, data, is_png)
    levels = _pyramid(rgb)
    readers = [_in_memory_level(a, f"L{i}") for i, a in enumerate(levels)]
    return Slide(
        path=p,
        levels=[to_dask(r, p) for r in readers],
        downsamples=[(h / a.shape[0], w / a.shape[1]) for a in levels],
        mpp=mpp,
        mpp_source="none" if mpp is None else ("png.pHYs" if is_png else "jpeg.JFIF"),
        magnification=None,
        vendor="png" if is_png else "jpeg",
        tile_size=(min(_BLOCK, h), min(_BLOCK, w)),
        compression="png" if is_png else "jpeg",
        readers=readers,
    )


def _pyramid(rgb: np.ndarray) -> list[np.ndarray]:
    """The image and its 2x reductions, computed at once: the pixels are in memory already,
    and a region of a reduced level then costs what the region costs (about a third more
    memory than the image)."""
    levels = [rgb]
    if max(rgb.shape[:2]) <= MIN_PYRAMID_SIDE:
        return levels
    while max(levels[-1].shape[:2]) > MIN_PYRAMID_SIDE // 2:
        prev = levels[-1]
        levels.append(halve(prev[: prev.shape[0] // 2 * 2, : prev.shape[1] // 2 * 2]))
    return levels


def _in_memory_level(arr: np.ndarray, key: str) -> ChunkedLevel:
    """A decoded image served as chunks (views, no decode): region reads cost what they cover.

    The image is made read-only: a read gets a copy, never a view it could change."""
    arr.flags.writeable = False

    def chunk(iy: int, ix: int) -> np.ndarray:
        return arr[iy * _BLOCK : (iy + 1) * _BLOCK, ix * _BLOCK : (ix + 1) * _BLOCK]

    return ChunkedLevel(key=key, shape=(int(arr.shape[0]), int(arr.shape[1])),
                        chunk=(_BLOCK, _BLOCK), decode=chunk, cache=None)


def _read(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError as err:
        raise SlideReadError(p, f"cannot be read ({err.strerror or err})") from err


def _decode(p: Path, data: bytes, is_png: bool) -> np.ndarray:
    import imagecodecs

    try:
        arr = imagecodecs.png_decode(data) if is_png else imagecodecs.jpeg8_decode(data)
    except Exception as err:  # noqa: BLE001 - codecs raise their own error types
        raise SlideReadError(p, f"the image cannot be decoded ({str(err).splitlines()[0][:120]})") from err
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise SlideReadError(
            p, f"not an 8-bit RGB brightfield image ({arr.dtype}, shape {arr.shape}); "
            "HER2 IHC scoring needs RGB"
        )
    return np.ascontiguousarray(arr[..., :3])


def _png_header(p: Path, data: bytes) -> tuple[tuple[int, int], Mpp | None]:
    """(height, width) from IHDR and the resolution from pHYs (pixels per metre)."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise SlideReadError(p, "the PNG file is truncated or has no IHDR header")
    w, h = struct.unpack(">II", data[16:24])
    mpp = None
    at = data.find(b"pHYs", 8)
    if at > 0 and at + 13 <= len(data):
        ppx, ppy, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
        if unit == 1 and ppx and ppy:
            mpp = _checked(Mpp(1e6 / ppx, 1e6 / ppy))
    return (h, w), mpp


def _jpeg_header(p: Path, data: bytes) -> tuple[tuple[int, int], Mpp | None]:
    """(height, width) from the first SOF marker and the resolution from JFIF APP0."""
    mpp, i = None, 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        seg = data[i + 4 : i + 2 + length]
        if marker == 0xE0 and seg[:5] == b"JFIF\x00" and len(seg) >= 12:
            unit, dx, dy = seg[7], *struct.unpack(">HH", seg[8:12])
            per = {1: 25400.0, 2: 10000.0}.get(unit)
            if per and dx and dy:
                mpp = _checked(Mpp(per / dx, per / dy))
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and len(seg) >= 5:
            h, w = struct.unpack(">HH", seg[1:5])
            return (h, w), mpp
        i += 2 + length
    raise SlideReadError(p, "the JPEG file is truncated or has no frame header")


def _checked(mpp: Mpp) -> Mpp | None:
    return mpp if plausible_mpp(mpp.x) and plausible_mpp(mpp.y) else None
