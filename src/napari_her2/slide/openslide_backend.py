"""OpenSlide backend (optional: needs ``openslide-python``; install ``napari-her2[openslide]``).

Opens what the native readers do not: 3DHistech MIRAX (``.mrxs``), Leica SCN, Ventana/Roche
BIF (also when named ``.tif``: recognised by the ``iScan`` block of its XMP), Hamamatsu
VMS/VMU and Sakura SVSlide, and, with ``open_slide(..., backend="openslide")``, anything else
OpenSlide reads. The result is the same :class:`Slide`: levels are chunked readers over
``OpenSlide.read_region`` (RGBA composited on white), the µm/px come from
``openslide.mpp-x/y`` and the downsamples from OpenSlide. The only module that imports
``openslide``, and only when a slide is opened.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SlideReadError, UnsupportedFormatError
from ._chunks import ChunkCache, ChunkDecodeError, ChunkedLevel
from ._model import (
    SLIDE_LIMITS,
    Mpp,
    Slide,
    SlideResources,
    check_chunk_size,
    check_level_size,
    plausible_mpp,
    to_dask,
)

log = logging.getLogger(__name__)

#: how to get the optional dependency
EXTRA_HINT = "pip install 'napari-her2[openslide]'"
#: chunk side when OpenSlide's tiles are too small or too large to read one by one
_CHUNK = 512
#: image directories and XMP bytes looked at when sniffing a Ventana BIF
_MAX_IFDS, _MAX_XMP = 64, 2**20
_XMP_TAG = 700


class MissingOpenSlideError(UnsupportedFormatError):
    """The file needs OpenSlide, which is not importable; the message leads with that."""

    def __str__(self) -> str:
        return f"{self.reason}, needed to open {self.path}: {EXTRA_HINT}"


def import_openslide(p: Path) -> Any:
    """The ``openslide`` module, or a one-line error naming the file and the extra."""
    try:
        import openslide
    except (ImportError, OSError) as err:  # OSError: the OpenSlide C library failed to load
        detail = str(err).splitlines()[0][:120] if str(err) else err.__class__.__name__
        raise MissingOpenSlideError(p, f"OpenSlide is not available ({detail})") from err
    return openslide


def open_openslide(p: Path) -> Slide:
    """Open ``p`` (a file, or a DICOM folder: its largest .dcm) with OpenSlide as a Slide."""
    openslide = import_openslide(p)
    target = _dicom_file(p) if p.is_dir() else p
    try:
        osr = openslide.OpenSlide(str(target))
    except openslide.OpenSlideUnsupportedFormatError as err:
        raise UnsupportedFormatError(p, "OpenSlide does not recognise this file") from err
    except (openslide.OpenSlideError, OSError) as err:
        raise SlideReadError(p, f"OpenSlide cannot open it ({_first_line(err)})") from err
    try:
        return _build(p, osr)
    except BaseException:
        osr.close()
        raise


def _build(p: Path, osr: Any) -> Slide:
    props = {str(k): str(v) for k, v in osr.properties.items()}
    handle = _Handle(osr)
    cache = ChunkCache()
    tile = _tile_size(props)
    readers = []
    for i, ((w, h), ds) in enumerate(zip(osr.level_dimensions, osr.level_downsamples)):
        check_level_size(p, (h, w), f"level {i}")
        readers.append(_level(handle, i, (int(h), int(w)), float(ds), tile, cache, p))
    mpp = _mpp(props)
    assoc = _associated(p, osr, props, handle)
    return Slide(
        path=p,
        levels=[to_dask(r, p) for r in readers],
        downsamples=[(float(ds), float(ds)) for ds in osr.level_downsamples],
        mpp=mpp,
        mpp_source="openslide.mpp-x/y" if mpp is not None else "none",
        magnification=_float(props.get("openslide.objective-power")),
        vendor=props.get("openslide.vendor", "openslide"),
        tile_size=tile,
        compression=props.get("tiff.Compression", "openslide"),
        associated=assoc,
        properties=props,
        readers=readers,
        _resources=SlideResources(lambda: _close(cache, handle)),
    )


def _close(cache: ChunkCache, handle: _Handle) -> None:
    cache.clear()
    handle.close()


class _Handle:
    """An OpenSlide handle shared by the threads that read it.

    OpenSlide reads one handle from many threads; ``close`` waits for reads in flight, and a
    read after it fails (ChunkDecodeError) instead of touching a freed handle."""

    def __init__(self, osr: Any) -> None:
        self.osr = osr
        self._cond = threading.Condition()
        self._active = 0
        self._closed = False

    @contextlib.contextmanager
    def _in_use(self, what: str) -> Iterator[Any]:
        """The open handle, counted as in use (``close`` waits for it); an OpenSlide or PIL
        failure inside becomes a ChunkDecodeError that names ``what`` was being read."""
        with self._cond:
            if self._closed:
                raise ChunkDecodeError("the slide is closed")
            self._active += 1
        try:
            yield self.osr
        except ChunkDecodeError:
            raise
        except Exception as err:  # noqa: BLE001 - OpenSlideError, PIL errors
            raise ChunkDecodeError(f"OpenSlide cannot read {what}: {_first_line(err)}") from err
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def read(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        with self._in_use(f"level {level} at {location}") as osr:
            return rgba_on_white(np.asarray(osr.read_region(location, level, size)))

    def associated(self, name: str) -> np.ndarray:
        with self._in_use(f"the {name} image") as osr:
            return rgba_on_white(np.asarray(osr.associated_images[name].convert("RGBA")))

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.wait_for(lambda: self._active == 0)
        self.osr.close()


def rgba_on_white(rgba: np.ndarray) -> np.ndarray:
    """(h, w, 4) un-premultiplied RGBA (OpenSlide's) as (h, w, 3) uint8 composited on white."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3:4]
    if alpha.size == 0 or alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.uint16)
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _level(handle: _Handle, index: int, shape: tuple[int, int], ds: float,
           tile: tuple[int, int], cache: ChunkCache, p: Path) -> ChunkedLevel:
    chunk = tile if all(128 <= t <= 1024 for t in tile) else (_CHUNK, _CHUNK)
    check_chunk_size(p, chunk, f"level {index}")
    ch, cw = chunk
    h, w = shape

    def decode(iy: int, ix: int) -> np.ndarray:
        y, x = iy * ch, ix * cw
        bh, bw = min(ch, h - y), min(cw, w - x)
        # read_region takes the top left in level-0 pixels, the size in level pixels
        return handle.read((round(x * ds), round(y * ds)), index, (bw, bh))

    return ChunkedLevel(key=f"openslide-L{index}", shape=shape, chunk=chunk, decode=decode,
                        cache=cache)


def _associated(p: Path, osr: Any, props: dict[str, str], handle: _Handle) -> dict:
    out = {}
    for name in osr.associated_images:
        w = _int(props.get(f"openslide.associated.{name}.width"))
        h = _int(props.get(f"openslide.associated.{name}.height"))
        if w is None or h is None or w * h > SLIDE_LIMITS.max_associated_pixels or w * h == 0:
            log.warning("%s: associated image %r skipped (size %sx%s)", p, name, w, h)
            continue

        def decode(iy: int, ix: int, name: str = name) -> np.ndarray:
            return handle.associated(name)

        level = ChunkedLevel(key=f"openslide-assoc-{name}", shape=(h, w), chunk=(h, w),
                             decode=decode, cache=None)
        out["macro" if name == "overview" else name] = to_dask(level, p)
    return out


def _tile_size(props: dict[str, str]) -> tuple[int, int]:
    th = _int(props.get("openslide.level[0].tile-height"))
    tw = _int(props.get("openslide.level[0].tile-width"))
    return (th, tw) if th and tw else (_CHUNK, _CHUNK)


def _mpp(props: dict[str, str]) -> Mpp | None:
    """Level-0 µm/px from OpenSlide, or None when absent or not a microscope resolution
    (the caller warns, as for the native backends)."""
    mx, my = _float(props.get("openslide.mpp-x")), _float(props.get("openslide.mpp-y"))
    if mx is None or my is None or not (plausible_mpp(mx) and plausible_mpp(my)):
        return None
    return Mpp(mx, my)


def _float(value: str | None) -> float | None:
    try:
        v = float(value) if value is not None else None
    except ValueError:
        return None
    return v if v is not None and math.isfinite(v) and v > 0 else None


def _int(value: str | None) -> int | None:
    v = _float(value)
    return int(v) if v is not None else None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else err.__class__.__name__


def _dicom_file(p: Path) -> Path:
    files = [f for f in p.iterdir() if f.suffix.lower() == ".dcm" and f.is_file()]
    if not files:
        raise UnsupportedFormatError(p, "is a folder without DICOM (.dcm) files")
    return max(files, key=lambda f: f.stat().st_size)


# --------------------------------------------------------------------------- sniffing


def is_ventana_bif(p: Path, head: bytes) -> bool:
    """True for a TIFF whose image directories carry a Ventana ``iScan`` XMP block (a BIF,
    whatever its name). Reads only the directories and their XMP, never pixels."""
    try:
        with open(p, "rb") as fh:
            return _has_iscan_xmp(fh, head)
    except (OSError, struct.error, ValueError):
        return False


def _has_iscan_xmp(fh, head: bytes) -> bool:
    order = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    offset = struct.unpack(order + ("Q" if big else "I"), head[8:16] if big else head[4:8])[0]
    count_fmt, entry_size, off_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
    count_size = struct.calcsize(count_fmt)
    seen: set[int] = set()
    for _ in range(_MAX_IFDS):
        if offset == 0 or offset in seen:
            return False
        seen.add(offset)
        fh.seek(offset)
        (n,) = struct.unpack(order + count_fmt, fh.read(count_size))
        entries = fh.read(min(n, 4096) * entry_size)
        for k in range(len(entries) // entry_size):
            e = entries[k * entry_size : (k + 1) * entry_size]
            tag = struct.unpack(order + "H", e[:2])[0]
            if tag != _XMP_TAG:
                continue
            length = struct.unpack(order + off_fmt, e[4 : 4 + struct.calcsize(off_fmt)])[0]
            value = e[4 + struct.calcsize(off_fmt) :]
            if length > len(value):
                fh.seek(struct.unpack(order + off_fmt, value)[0])
                value = fh.read(min(length, _MAX_XMP))
            if b"iScan" in value:
                return True
        fh.seek(offset + count_size + n * entry_size)
        (offset,) = struct.unpack(order + off_fmt, fh.read(struct.calcsize(off_fmt)))
    return False
