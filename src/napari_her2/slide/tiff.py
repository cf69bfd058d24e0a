"""TIFF-family backend: Aperio SVS, Hamamatsu NDPI, OME-TIFF, generic tiled or strip TIFF.

The only module that calls tifffile. tifffile parses the file; chunks are decoded straight
from the file with ``os.pread`` and the page's own decoder, which runs in parallel in dask's
threads (tifffile's zarr store serialises decoding: see ``benchmarks/bench_read.py``). Vendor
metadata comes from :mod:`.vendors`.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from pathlib import Path
from typing import Literal

import dask.array as da
import numpy as np

from ..errors import SlideReadError
from ._chunks import ChunkCache, ChunkDecodeError, ChunkedLevel, FileHandle
from ._model import (
    SLIDE_LIMITS,
    Slide,
    SlideResources,
    check_chunk_size,
    check_level_size,
    to_dask,
)
from .bands import RestartBands, band_rows, banded
from .vendors import tiff_metadata

log = logging.getLogger(__name__)

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def check_first_ifd(p: Path, head: bytes) -> None:
    """A TIFF whose first image directory lies past its end was cut short."""
    order: Literal["little", "big"] = "little" if head[:2] == b"II" else "big"
    big = head[2:4] in (b"+\x00", b"\x00+")
    offset = int.from_bytes(head[8:16] if big else head[4:8], order)
    size = p.stat().st_size
    if offset >= size:
        raise SlideReadError(
            p, f"the file is truncated: its first image directory (byte {offset}) lies past "
            f"its end ({size} bytes)"
        )


class BoundedReader(io.BufferedReader):
    """A file whose reads never ask for more than what is left in it.

    tifffile sizes some reads from the file's own values (an NDPI page reads McuStarts[0]
    bytes of JPEG header): a damaged value would allocate gigabytes for a read that returns
    a few bytes. Past the end a read returns what is there, as before.
    """

    def __init__(self, path: Path) -> None:
        raw = io.FileIO(path, "rb")
        super().__init__(raw)
        self._size = os.fstat(raw.fileno()).st_size

    def read(self, size: int | None = -1, /) -> bytes:
        if size is not None and size > 0:
            size = min(size, max(0, self._size - self.tell()))
            if size == 0:
                return b""
        return super().read(size)


def open_tiff(p: Path) -> Slide:
    import tifffile

    problems = _TiffLogCapture()
    tlog = logging.getLogger("tifffile")
    tlog.addHandler(problems)
    stream = BoundedReader(p)
    try:
        tif = tifffile.TiffFile(stream, name=p.name)
        series = tif.series
    except Exception as err:  # noqa: BLE001 - tifffile raises many types on broken files
        stream.close()
        raise SlideReadError(p, f"not a readable TIFF ({_reason(err)})") from err
    finally:
        tlog.removeHandler(problems)
    try:
        if problems.offsets:
            raise SlideReadError(
                p, f"the file is truncated or damaged: an image directory (byte "
                f"{problems.offsets[0]}) lies past its end ({p.stat().st_size} bytes)"
            )
        return _build_tiff_slide(p, tif, series, stream)
    except SlideReadError:
        tif.close()
        stream.close()
        raise
    except Exception as err:  # noqa: BLE001 - any parse failure is a bad file, not a bug
        tif.close()
        stream.close()
        raise SlideReadError(p, f"cannot be parsed as a slide ({_reason(err)})") from err


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]


class _TiffLogCapture(logging.Handler):
    """Collects tifffile's reports of image directories it could not reach."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.offsets: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = re.search(r"invalid (?:page )?offset(?: to first page)? (\d+)", record.getMessage())
        if match:
            self.offsets.append(int(match.group(1)))


def _build_tiff_slide(p: Path, tif, all_series, stream: io.BufferedReader) -> Slide:
    series = [s for s in all_series if s.shape and min(s.shape[:2]) > 0]
    if not series:
        raise SlideReadError(p, "the TIFF contains no image data")
    main = series[0]
    _check_rgb(p, main)
    check_level_size(p, main.keyframe.shape[:2])
    cache = ChunkCache()
    fh = FileHandle(p, others=(tif, stream, cache), max_read=SLIDE_LIMITS.max_chunk_bytes)
    file_size = fh.size()
    readers = [
        _tiff_level(p, fh, lvl.keyframe, f"L{i}", cache, file_size)
        for i, lvl in enumerate(main.levels)
    ]
    levels = [to_dask(r, p) for r in readers]
    h0, w0 = readers[0].shape
    downs = [(h0 / r.shape[0], w0 / r.shape[1]) for r in readers]
    assoc = _tiff_associated(p, series[1:], fh, file_size)
    meta = tiff_metadata(p, tif, main.keyframe)
    key = main.keyframe
    return Slide(
        path=p,
        levels=levels,
        downsamples=downs,
        mpp=meta.mpp,
        mpp_source=meta.mpp_source,
        magnification=meta.magnification,
        vendor=meta.vendor,
        tile_size=_stored_chunk(main.keyframe, readers[0]),
        compression=_compression_name(key),
        associated=assoc,
        properties=meta.properties,
        readers=readers,
        _resources=SlideResources(fh.close),
    )


def _stored_chunk(page, reader: ChunkedLevel) -> tuple[int, int]:
    """The file's own tile or strip size (the reader may read bands of several strips)."""
    if page.compression == 1 and page.is_contiguous:
        return reader.chunk
    return int(page.chunks[0]), int(page.chunks[1])


def _check_rgb(p: Path, series) -> None:
    page = series.keyframe
    samples = page.samplesperpixel
    if page.dtype != np.uint8 or samples not in (3, 4) or page.planarconfig != 1:
        raise SlideReadError(
            p,
            f"not an 8-bit RGB brightfield image ({samples} sample(s) per pixel, "
            f"{page.dtype}, axes {series.axes}); HER2 IHC scoring needs RGB",
        )


def _tiff_level(p: Path, fh: FileHandle, page, key: str, cache: ChunkCache | None, file_size: int):
    """A ChunkedLevel that decodes one TIFF page's tiles or strips straight from the file."""
    h, w = int(page.shape[0]), int(page.shape[1])
    offsets, counts = page.dataoffsets, page.databytecounts
    if page.compression == 1 and page.is_contiguous:
        return _memmap_level(p, page, key, cache)
    ch, cw = int(page.chunks[0]), int(page.chunks[1])
    check_chunk_size(p, (ch, cw), f"level {key}")
    nx = math.ceil(w / cw)
    needed = math.ceil(h / ch) * nx
    if len(offsets) < needed or len(counts) < needed:
        raise SlideReadError(
            p, f"the file is damaged: level {key} claims {w} x {h} px in {cw} x {ch} px chunks "
            f"({needed} chunks) but lists {min(len(offsets), len(counts))}")
    ends = np.asarray(offsets, np.int64) + np.asarray(counts, np.int64)
    past = int(np.count_nonzero(ends > file_size))
    if past:
        raise SlideReadError(
            p, f"the file is truncated: {past} of {len(ends)} tiles of a {w}x{h} level "
            "lie past its end"
        )
    decode_kw = {"jpegtables": page.jpegtables, "jpegheader": getattr(page, "jpegheader", None)}
    # Aperio 33003: JPEG 2000 codestreams of YCbCr components, without a colour transform
    ycbcr = int(page.compression) == 33003

    def decode(iy: int, ix: int) -> np.ndarray | None:
        i = iy * nx + ix
        if i >= len(offsets) or counts[i] == 0:
            return None
        try:
            data = fh.pread(int(counts[i]), int(offsets[i]))
        except ChunkDecodeError as err:
            raise ChunkDecodeError(f"{key} tile ({iy}, {ix}): {err}") from err
        try:
            seg, _, _ = page.decode(data, i, **decode_kw)
            if ycbcr and seg is not None:
                seg = _ycbcr_to_rgb(seg)
        except Exception as err:  # noqa: BLE001 - codecs raise their own error types
            raise ChunkDecodeError(f"{key} tile ({iy}, {ix}) cannot be decoded: {_reason(err)}") from err
        if seg is None:
            return None
        return np.asarray(seg).reshape(seg.shape[-3:])

    header = decode_kw["jpegheader"]
    g = band_rows(ch, cw, restart_intervals=header is not None)
    if g > 1:
        per_strip = banded(decode, ch, cw, g, math.ceil(h / ch))
        bands = RestartBands.for_page(fh, page, (h, w), (ch, cw), g, per_strip)
        if bands is not None:
            return ChunkedLevel(key=key, shape=(h, w), chunk=(ch * g, cw), decode=bands.decode,
                                cache=cache, decode_into=bands.decode_into)
        return ChunkedLevel(key=key, shape=(h, w), chunk=(ch * g, cw), decode=per_strip,
                            cache=cache)
    return ChunkedLevel(key=key, shape=(h, w), chunk=(ch, cw), decode=decode, cache=cache)


def _ycbcr_to_rgb(seg: np.ndarray) -> np.ndarray:
    """Full-range ITU-R BT.601 YCbCr (as JPEG uses it) to RGB."""
    x = np.asarray(seg, np.float32)
    y, cb, cr = x[..., 0], x[..., 1] - 128.0, x[..., 2] - 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _memmap_level(p: Path, page, key: str, cache: ChunkCache | None) -> ChunkedLevel:
    """Uncompressed contiguous pixels: any region is a slice of a memory map."""
    offset = int(page.dataoffsets[0])
    h, w, s = int(page.shape[0]), int(page.shape[1]), int(page.samplesperpixel)
    mm = np.memmap(p, dtype=np.uint8, mode="r", offset=offset, shape=(h, w, s))
    block = 512

    def decode(iy: int, ix: int) -> np.ndarray:
        return np.ascontiguousarray(mm[iy * block : (iy + 1) * block, ix * block : (ix + 1) * block, :3])

    return ChunkedLevel(key=key, shape=(h, w), chunk=(block, block), decode=decode, cache=None)


def _tiff_associated(p, others, fh: FileHandle, file_size: int) -> dict[str, da.Array]:
    out: dict[str, da.Array] = {}
    for s in others:
        name = (s.name or "").strip().lower()
        page = s.keyframe
        if not name or name in out or page.dtype != np.uint8 or page.samplesperpixel not in (3, 4):
            continue
        try:
            check_level_size(p, page.shape[:2], f"associated image {name!r}",
                             SLIDE_LIMITS.max_associated_pixels)
            reader = _tiff_level(p, fh, page, f"assoc-{name}", None, file_size)
        except SlideReadError as err:
            log.warning("%s: associated image %r skipped: %s", p, name, err.reason)
            continue
        out[name] = to_dask(reader, p)
    return out


def _compression_name(page) -> str:
    comp = page.compression
    return getattr(comp, "name", str(comp))


