"""Chunk rows read as bands: thin strips (NDPI restart intervals, TIFF strips of a few rows)
grouped so that a tile costs a few chunk lookups, and NDPI restart-interval bands decoded by
libjpeg in one call.
"""

from __future__ import annotations

import numpy as np

from ._chunks import FILL_VALUE, FileHandle

#: chunks this few rows high (NDPI restart intervals: 8 or 16 rows) are read in bands of
#: about this many rows, so that a tile costs a few chunk lookups instead of dozens
BAND_ROWS = 64
#: JPEG restart markers count RST0..RST7 and start again: a band of restart intervals that
#: libjpeg decodes as one image must start at an interval whose marker number is 0
RESTART_CYCLE = 8


def band_rows(ch: int, cw: int, restart_intervals: bool = False) -> int:
    """How many chunk rows of ``ch`` x ``cw`` px chunks make one band (1: no banding).

    restart_intervals: the chunks are JPEG restart intervals (NDPI); bands are then a whole
    number of restart-marker cycles (8 intervals), so that each band decodes in one call."""
    if not (ch < BAND_ROWS and cw > ch):
        return 1
    g = max(1, BAND_ROWS // ch)
    if restart_intervals:
        g = RESTART_CYCLE * max(1, g // RESTART_CYCLE)
    return g


#: end-of-image marker closing a band of restart intervals
_EOI = b"\xff\xd9"


def _sof_height_offset(header: bytes) -> int | None:
    """Byte offset of the image height in the baseline SOF segment of a JPEG header (None
    when the header has no SOF0 before its scan)."""
    i = 2 if header[:2] == b"\xff\xd8" else 0
    while i + 4 <= len(header):
        if header[i] != 0xFF:
            return None
        marker = header[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xC0:
            return i + 5 if i + 7 <= len(header) else None
        if marker == 0xDA:  # start of scan: no SOF0 before it
            return None
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            i += 2
            continue
        i += 2 + int.from_bytes(header[i + 2 : i + 4], "big")
    return None


def _jpeg_colorspaces(page) -> tuple[int | None, int | None] | None:
    """(colorspace, outcolorspace) for ``imagecodecs.jpeg8_decode`` as tifffile decodes the
    page's JPEG chunks (None: a layout this fast path does not handle)."""
    if page.planarconfig != 1 or page.extrasamples or page.samplesperpixel != 3:
        return None
    if page.photometric == 6:  # YCbCr -> RGB
        return None, 2
    if page.photometric == 2:  # RGB: stored without conversion unless JFIF says YCbCr
        return (None if page.is_jfif else 2), 2
    return None


class RestartBands:
    """Bands of NDPI restart intervals, each band decoded by libjpeg in one call.

    An NDPI level is one JPEG whose restart intervals tifffile lists as strips (McuStarts).
    When each interval spans the whole width, a band of ``g`` consecutive intervals is itself
    a JPEG: the shared header with the band's height, the intervals' bytes as stored (their
    restart markers included), an end-of-image marker. One call decodes the band instead of
    ``g`` (a quarter less CPU on the shared NDPI), and a band that fills rows of the output
    decodes straight into them (:meth:`decode_into`). Bands start on a restart-marker cycle
    (``g`` is a multiple of 8), so the markers run RST0..RST7 as libjpeg expects. Pixels
    equal the per-interval decode; a band whose intervals are not stored back to back, or
    that fails to decode, is decoded interval by interval (``per_strip``) instead.
    """

    def __init__(self, fh: FileHandle, shape: tuple[int, int], chunk: tuple[int, int], g: int,
                 header: bytes, height_at: int, colorspaces: tuple[int | None, int | None],
                 offsets, counts, per_strip) -> None:
        self.fh, self.shape, self.chunk, self.g = fh, shape, chunk, g
        self.header, self.height_at = header, height_at
        self.colorspace, self.outcolorspace = colorspaces
        starts = np.asarray(offsets, np.int64)
        sizes = np.asarray(counts, np.int64)
        self.starts, self.ends = starts, starts + sizes
        # interval k and k + 1 are stored back to back (and k is not empty)
        self.joined = np.append((sizes[:-1] > 0) & (self.ends[:-1] == starts[1:]), False)
        self.per_strip = per_strip

    @classmethod
    def for_page(cls, fh: FileHandle, page, shape: tuple[int, int], chunk: tuple[int, int],
                 g: int, per_strip) -> RestartBands | None:
        """The band decoder of an NDPI page whose restart intervals span its width (None for
        any other page)."""
        header = getattr(page, "jpegheader", None)
        if (header is None or int(page.compression) != 7 or g % RESTART_CYCLE
                or chunk[1] < shape[1]):
            return None
        height_at = _sof_height_offset(header)
        colorspaces = _jpeg_colorspaces(page)
        if height_at is None or colorspaces is None:
            return None
        if int.from_bytes(header[height_at : height_at + 2], "big") != chunk[0]:
            return None
        return cls(fh, shape, chunk, g, header, height_at, colorspaces, page.dataoffsets,
                   page.databytecounts, per_strip)

    def _rows(self, iy: int) -> tuple[int, int]:
        """First interval of band ``iy`` and the image rows the band holds."""
        k0 = iy * self.g
        return k0, min(self.g * self.chunk[0], self.shape[0] - k0 * self.chunk[0])

    def _joint(self, iy: int, out: np.ndarray | None) -> np.ndarray | None:
        """Band ``iy`` decoded in one call (into ``out`` when given), or None when it cannot
        be (intervals not back to back, a failed decode, an unexpected shape)."""
        k0, rows = self._rows(iy)
        n = -(-rows // self.chunk[0])
        if (rows <= 0 or k0 + n > len(self.starts) or not self.joined[k0 : k0 + n - 1].all()
                or self.ends[k0 + n - 1] <= self.starts[k0 + n - 1]):
            return None
        start, end = int(self.starts[k0]), int(self.ends[k0 + n - 1])
        import imagecodecs

        try:
            data = self.fh.pread(end - start, start)
            header = (self.header[: self.height_at] + rows.to_bytes(2, "big")
                      + self.header[self.height_at + 2 :])
            arr = imagecodecs.jpeg8_decode(header + data + _EOI, colorspace=self.colorspace,
                                           outcolorspace=self.outcolorspace, out=out)
        except Exception:  # noqa: BLE001 - fall back to the interval-by-interval decode
            return None
        if arr.shape != (rows, self.chunk[1], 3):
            return None
        return arr

    def decode(self, iy: int, ix: int) -> np.ndarray | None:
        arr = self._joint(iy, None) if ix == 0 else None
        return arr if arr is not None else self.per_strip(iy, ix)

    def decode_into(self, iy: int, ix: int, target: np.ndarray) -> bool:
        """Decode band (iy, ix) into ``target`` (C-contiguous, the band's image pixels);
        False when the file stores nothing there (the caller paints background)."""
        _, rows = self._rows(iy)
        if (ix == 0 and target.shape == (rows, self.chunk[1], 3)
                and self._joint(iy, target) is not None):
            return True
        arr = self.decode(iy, ix)  # e.g. an interval wider than the image: decode, then copy
        if arr is None:
            return False
        h, w = min(target.shape[0], arr.shape[0]), min(target.shape[1], arr.shape[1])
        target[:h, :w] = arr[:h, :w, :3]
        target[h:] = FILL_VALUE
        target[:h, w:] = FILL_VALUE
        return True


def banded(decode, ch: int, cw: int, g: int, rows: int):
    """decode(iy, ix) of bands of ``g`` chunk rows, each chunk decoded by ``decode``."""

    def decode_band(iy: int, ix: int) -> np.ndarray | None:
        band = np.empty((ch * g, cw, 3), np.uint8)
        found = False
        for j in range(g):
            part = decode(iy * g + j, ix) if iy * g + j < rows else None
            target = band[j * ch : (j + 1) * ch]
            if part is None:
                target[...] = FILL_VALUE
                continue
            found = True
            ph, pw = min(ch, part.shape[0]), min(cw, part.shape[1])
            target[:ph, :pw] = part[:ph, :pw, :3]
            target[ph:] = FILL_VALUE
            target[:ph, pw:] = FILL_VALUE
        return band if found else None

    return decode_band
