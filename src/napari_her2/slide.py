"""Open a whole-slide image as a lazy pyramid with its true resolution.

:func:`open_slide` returns a :class:`Slide`: every pyramid level as a dask array whose blocks
are whole multiples of the file's own tiles, the microns per pixel and magnification from the
file's metadata, the level downsamples as they really are, and the associated images.

This is the only module that calls tifffile (DICOM goes through ``_dicom``). tifffile parses
the file; chunks are decoded straight from the file with ``os.pread`` and the page's own
decoder, which runs in parallel in dask's threads (tifffile's zarr store serialises decoding:
see ``benchmarks/bench_read.py``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import dask.array as da
import numpy as np

from ._chunks import ChunkCache, ChunkDecodeError, ChunkedLevel, FileHandle, LevelArray, dask_chunks
from .errors import MissingMppError, SlideReadError, UnsupportedFormatError

log = logging.getLogger(__name__)

#: microns per pixel outside this range is not a microscope scan (72 dpi is 352.8 µm/px)
PLAUSIBLE_MPP = (0.02, 50.0)
#: single-level images larger than this (px, either side) get lazily built lower levels
MIN_PYRAMID_SIDE = 2048
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class MissingMppWarning(UserWarning):
    """The slide's metadata gives no usable microns per pixel."""


class Mpp(NamedTuple):
    """Microns per pixel of level 0."""

    x: float
    y: float


@dataclass(eq=False)
class Slide:
    """A whole-slide image: lazy pyramid levels plus resolution and metadata.

    levels: (H, W, 3) uint8 dask arrays, level 0 first.
    downsamples: per level (y, x) level-0 pixels per level pixel (not always powers of two).
    mpp: level-0 microns per pixel, or None when the file gives none (see ``mpp_source``).
    """

    path: Path
    levels: list[da.Array]
    downsamples: list[tuple[float, float]]
    mpp: Mpp | None
    mpp_source: str
    magnification: float | None
    vendor: str
    tile_size: tuple[int, int]
    compression: str
    associated: dict[str, da.Array] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    readers: list[ChunkedLevel] = field(default_factory=list, repr=False)
    _closer: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (height, width) in pixels."""
        return (int(self.levels[0].shape[0]), int(self.levels[0].shape[1]))

    @property
    def level_count(self) -> int:
        return len(self.levels)

    def level_mpp(self, level: int) -> Mpp | None:
        """Microns per pixel of a level (None without a level-0 mpp)."""
        if self.mpp is None:
            return None
        dy, dx = self.downsamples[level]
        return Mpp(self.mpp.x * dx, self.mpp.y * dy)

    def require_mpp(self) -> Mpp:
        """The level-0 mpp, or :class:`MissingMppError` naming the file."""
        if self.mpp is None:
            raise MissingMppError(self.path)
        return self.mpp

    def best_level_for_downsample(self, downsample: float) -> int:
        """The lowest-resolution level whose downsample does not exceed ``downsample``."""
        best = 0
        for i, (dy, dx) in enumerate(self.downsamples):
            if max(dy, dx) <= downsample * (1 + 1e-3):
                best = i
        return best

    def read_region(
        self, level: int, y: int, x: int, h: int, w: int, *, strict: bool = True
    ) -> np.ndarray:
        """Pixels of ``level`` in [y, y+h) x [x, x+w) (level coordinates), (h, w, 3) uint8.

        With strict=True a corrupt chunk raises :class:`SlideReadError`; outside the image is
        white. Levels built lazily from a single-level file are computed through dask.
        """
        if level < len(self.readers):
            try:
                return self.readers[level].read_region(y, x, h, w, strict=strict)
            except ChunkDecodeError as err:
                raise SlideReadError(self.path, str(err)) from err
        arr = self.levels[level]
        out = np.full((h, w, 3), 255, np.uint8)
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + h, arr.shape[0]), min(x + w, arr.shape[1])
        if y1 > y0 and x1 > x0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = arr[y0:y1, x0:x1].compute(scheduler="sync")
        return out

    def with_mpp(self, mpp: float | tuple[float, float]) -> Slide:
        """A copy of this slide with the level-0 microns per pixel set by the user."""
        mx, my = (mpp, mpp) if np.isscalar(mpp) else mpp  # type: ignore[misc]
        _check_user_mpp(self.path, float(mx), float(my))
        copy = Slide(**{f: getattr(self, f) for f in self.__dataclass_fields__})
        copy.mpp, copy.mpp_source = Mpp(float(mx), float(my)), "user"
        return copy

    def close(self) -> None:
        if self._closer is not None:
            self._closer()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def summary(self) -> dict:
        """JSON-able description: levels, sizes, downsamples, mpp, vendor, tiles."""
        return {
            "file": str(self.path),
            "vendor": self.vendor,
            "mpp": None if self.mpp is None else {"x": self.mpp.x, "y": self.mpp.y},
            "mpp_source": self.mpp_source,
            "magnification": self.magnification,
            "tile_size": list(self.tile_size),
            "compression": self.compression,
            "levels": [
                {"shape": [int(a.shape[0]), int(a.shape[1])], "downsample": [dy, dx]}
                for a, (dy, dx) in zip(self.levels, self.downsamples)
            ],
            "associated": {k: [int(a.shape[0]), int(a.shape[1])] for k, a in self.associated.items()},
        }


def open_slide(path: str | os.PathLike, mpp: float | tuple[float, float] | None = None) -> Slide:
    """Open a slide file (SVS, NDPI, OME-TIFF, generic tiled or strip TIFF, DICOM WSI folder).

    mpp: level-0 microns per pixel; overrides the file's metadata. When neither gives one the
    slide still opens (with a :class:`MissingMppWarning`) and ``slide.mpp`` is None.

    Raises :class:`SlideReadError` (or its subclass UnsupportedFormatError) with a one-line
    message naming the file and the problem.
    """
    p = Path(path).expanduser()
    kind = _sniff(p)
    if kind == "dicom":
        from ._dicom import open_dicom

        slide = open_dicom(p)
    else:
        slide = _open_tiff(p)
    if len(slide.levels) == 1:
        slide.levels, slide.downsamples = _lazy_pyramid(slide.levels[0])
    if mpp is not None:
        slide = slide.with_mpp(mpp)
    elif slide.mpp is None:
        warnings.warn(str(MissingMppError(p)), MissingMppWarning, stacklevel=2)
    return slide


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """True for a readable folder holding DICOM (.dcm) files."""
    p = Path(path)
    try:
        return p.is_dir() and any(f.suffix.lower() == ".dcm" for f in p.iterdir())
    except OSError:
        return False


def _sniff(p: Path) -> str:
    if not p.exists():
        raise SlideReadError(p, "no such file or folder")
    if p.is_dir():
        if is_dicom_folder(p):
            return "dicom"
        raise UnsupportedFormatError(p, "is a folder without DICOM (.dcm) files")
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError as err:
        raise SlideReadError(p, f"cannot be read ({err.strerror or err})") from err
    if not head:
        raise SlideReadError(p, "the file is empty")
    if head[:4] in _TIFF_MAGIC:
        _check_first_ifd(p, head)
        return "tiff"
    if head[128:132] == b"DICM":
        return "dicom"
    raise UnsupportedFormatError(p, "not a TIFF-based or DICOM slide (unrecognised file header)")


# --------------------------------------------------------------------------- TIFF backend


def _check_first_ifd(p: Path, head: bytes) -> None:
    """A TIFF whose first image directory lies past its end was cut short."""
    order = "little" if head[:2] == b"II" else "big"
    big = head[2:4] in (b"+\x00", b"\x00+")
    offset = int.from_bytes(head[8:16] if big else head[4:8], order)
    size = p.stat().st_size
    if offset >= size:
        raise SlideReadError(
            p, f"the file is truncated: its first image directory (byte {offset}) lies past "
            f"its end ({size} bytes)"
        )


def _open_tiff(p: Path) -> Slide:
    import tifffile

    problems = _TiffLogCapture()
    tlog = logging.getLogger("tifffile")
    tlog.addHandler(problems)
    try:
        tif = tifffile.TiffFile(p)
        series = tif.series
    except Exception as err:  # noqa: BLE001 - tifffile raises many types on broken files
        raise SlideReadError(p, f"not a readable TIFF ({_reason(err)})") from err
    finally:
        tlog.removeHandler(problems)
    try:
        if problems.offsets:
            raise SlideReadError(
                p, f"the file is truncated or damaged: an image directory (byte "
                f"{problems.offsets[0]}) lies past its end ({p.stat().st_size} bytes)"
            )
        return _build_tiff_slide(p, tif, series)
    except SlideReadError:
        tif.close()
        raise
    except Exception as err:  # noqa: BLE001 - any parse failure is a bad file, not a bug
        tif.close()
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


def _build_tiff_slide(p: Path, tif, all_series) -> Slide:
    series = [s for s in all_series if s.shape and min(s.shape[:2]) > 0]
    if not series:
        raise SlideReadError(p, "the TIFF contains no image data")
    main = series[0]
    _check_rgb(p, main)
    cache = ChunkCache()
    fh = FileHandle(p, others=(tif, cache))
    file_size = fh.size()
    readers = [
        _tiff_level(p, fh, lvl.keyframe, f"L{i}", cache, file_size)
        for i, lvl in enumerate(main.levels)
    ]
    levels = [_to_dask(r, p) for r in readers]
    h0, w0 = readers[0].shape
    downs = [(h0 / r.shape[0], w0 / r.shape[1]) for r in readers]
    assoc = _tiff_associated(p, series[1:], fh, file_size)
    meta = _tiff_metadata(p, tif, main.keyframe)
    key = main.keyframe
    return Slide(
        path=p,
        levels=levels,
        downsamples=downs,
        mpp=meta.mpp,
        mpp_source=meta.mpp_source,
        magnification=meta.magnification,
        vendor=meta.vendor,
        tile_size=readers[0].chunk,
        compression=_compression_name(key),
        associated=assoc,
        properties=meta.properties,
        readers=readers,
        _closer=fh.close,
    )


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
    nx = math.ceil(w / cw)
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
        data = fh.pread(int(counts[i]), int(offsets[i]))
        try:
            seg, _, _ = page.decode(data, i, **decode_kw)
            if ycbcr and seg is not None:
                seg = _ycbcr_to_rgb(seg)
        except Exception as err:  # noqa: BLE001 - codecs raise their own error types
            raise ChunkDecodeError(f"{key} tile ({iy}, {ix}) cannot be decoded: {_reason(err)}") from err
        if seg is None:
            return None
        return np.asarray(seg).reshape(seg.shape[-3:])

    return ChunkedLevel(key=key, shape=(h, w), chunk=(ch, cw), decode=decode, cache=cache)


def _ycbcr_to_rgb(seg: np.ndarray) -> np.ndarray:
    """Full-range ITU-R BT.601 YCbCr (as JPEG uses it) to RGB."""
    x = np.asarray(seg, np.float32)
    y, cb, cr = x[..., 0], x[..., 1] - 128.0, x[..., 2] - 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _memmap_level(p: Path, page, key: str, cache: ChunkCache) -> ChunkedLevel:
    """Uncompressed contiguous pixels: any region is a slice of a memory map."""
    offset = int(page.dataoffsets[0])
    h, w, s = int(page.shape[0]), int(page.shape[1]), int(page.samplesperpixel)
    mm = np.memmap(p, dtype=np.uint8, mode="r", offset=offset, shape=(h, w, s))
    block = 512

    def decode(iy: int, ix: int) -> np.ndarray:
        return np.ascontiguousarray(mm[iy * block : (iy + 1) * block, ix * block : (ix + 1) * block, :3])

    return ChunkedLevel(key=key, shape=(h, w), chunk=(block, block), decode=decode, cache=None)


def _to_dask(level: ChunkedLevel, p: Path) -> da.Array:
    return da.from_array(
        LevelArray(level),
        chunks=dask_chunks(level.shape, level.chunk),
        asarray=False,
        lock=False,
        fancy=False,
        meta=np.empty((0, 0, 3), np.uint8),
        name=f"napari-her2-{p.name}-{level.key}-{id(level):x}",
    )


def _lazy_pyramid(base: da.Array) -> tuple[list[da.Array], list[tuple[float, float]]]:
    """Lower levels of a single-level image, each half the previous, built only on demand."""
    levels, downs = [base], [(1.0, 1.0)]
    h0, w0 = base.shape[:2]
    while max(levels[-1].shape[:2]) > MIN_PYRAMID_SIDE // 2 and max(h0, w0) > MIN_PYRAMID_SIDE:
        prev = levels[-1]
        even = prev[: prev.shape[0] // 2 * 2, : prev.shape[1] // 2 * 2]
        even = even.rechunk(tuple(max(2, c // 2 * 2) for c in _block(even)) + (3,))
        half = da.map_blocks(_halve, even, dtype=np.uint8, chunks=tuple(
            tuple(c // 2 for c in cs) for cs in even.chunks[:2]) + ((3,),))
        levels.append(half)
        downs.append((h0 / half.shape[0], w0 / half.shape[1]))
    return levels, downs


def _block(arr: da.Array) -> tuple[int, int]:
    return (min(2048, arr.shape[0]), min(2048, arr.shape[1]))


def _halve(block: np.ndarray) -> np.ndarray:
    b = block.astype(np.uint16)
    out = (b[0::2, 0::2] + b[1::2, 0::2] + b[0::2, 1::2] + b[1::2, 1::2] + 2) // 4
    return out.astype(np.uint8)


def _tiff_associated(p, others, fh: FileHandle, file_size: int) -> dict[str, da.Array]:
    out: dict[str, da.Array] = {}
    for s in others:
        name = (s.name or "").strip().lower()
        page = s.keyframe
        if not name or name in out or page.dtype != np.uint8 or page.samplesperpixel not in (3, 4):
            continue
        try:
            reader = _tiff_level(p, fh, page, f"assoc-{name}", None, file_size)
        except SlideReadError as err:
            log.warning("%s: associated image %r skipped: %s", p, name, err.reason)
            continue
        out[name] = _to_dask(reader, p)
    return out


def _compression_name(page) -> str:
    comp = page.compression
    return getattr(comp, "name", str(comp))


# --------------------------------------------------------------------------- metadata


@dataclass
class _Meta:
    vendor: str
    mpp: Mpp | None = None
    mpp_source: str = "none"
    magnification: float | None = None
    properties: dict[str, str] = field(default_factory=dict)


def _tiff_metadata(p: Path, tif, page) -> _Meta:
    if tif.is_svs:
        meta = _aperio_meta(page.description)
    elif tif.is_ndpi:
        meta = _ndpi_meta(page)
    elif tif.is_ome:
        meta = _ome_meta(p, tif.ome_metadata)
    else:
        meta = _Meta(vendor="generic-tiff")
    if meta.mpp is None:
        meta.mpp, meta.mpp_source = _resolution_tag_mpp(p, page, meta.properties)
    return meta


def _aperio_meta(description: str) -> _Meta:
    props: dict[str, str] = {}
    for part in description.split("|")[1:]:
        key, sep, value = part.partition("=")
        if sep:
            props[f"aperio.{key.strip()}"] = value.strip()
    meta = _Meta(vendor="aperio", properties=props)
    mpp = _float(props.get("aperio.MPP"))
    if mpp is not None and _plausible(mpp):
        meta.mpp, meta.mpp_source = Mpp(mpp, mpp), "aperio.MPP"
    meta.magnification = _float(props.get("aperio.AppMag"))
    return meta


def _ndpi_meta(page) -> _Meta:
    tags = getattr(page, "ndpi_tags", None) or {}
    props = {
        f"hamamatsu.{k}": str(v)
        for k, v in tags.items()
        if isinstance(v, str | int | float) and k not in ("McuStarts", "Comments")
    }
    meta = _Meta(vendor="hamamatsu", properties=props)
    meta.magnification = _float(tags.get("Magnification"))
    return meta


_OME_UNITS = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}


def _ome_meta(p: Path, xml: str | None) -> _Meta:
    meta = _Meta(vendor="ome")
    if not xml:
        return meta
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        log.warning("%s: OME-XML cannot be parsed (%s); resolution tags used instead", p, err)
        return meta
    pixels = next((el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"), None)
    if pixels is not None:
        sx, sy = _float(pixels.get("PhysicalSizeX")), _float(pixels.get("PhysicalSizeY"))
        ux = _OME_UNITS.get(pixels.get("PhysicalSizeXUnit", "µm"))
        uy = _OME_UNITS.get(pixels.get("PhysicalSizeYUnit", "µm"))
        if sx and ux and _plausible(sx * ux):
            my = sy * uy if sy and uy else sx * ux
            meta.mpp, meta.mpp_source = Mpp(sx * ux, my), "ome.PhysicalSize"
    for el in root.iter():
        if el.tag.endswith("Objective"):
            meta.magnification = _float(el.get("NominalMagnification"))
            break
    return meta


def _resolution_tag_mpp(p: Path, page, props: dict[str, str]) -> tuple[Mpp | None, str]:
    """mpp from TIFF XResolution/YResolution with a centimetre or inch unit."""
    tags = page.tags
    unit_tag, xr_tag = tags.get("ResolutionUnit"), tags.get("XResolution")
    if unit_tag is None or xr_tag is None:
        return None, "none"
    per = {2: 25400.0, 3: 10000.0}.get(int(unit_tag.value))
    yr_tag = tags.get("YResolution") or xr_tag
    xres, yres = _ratio(xr_tag.value), _ratio(yr_tag.value)
    if per is None or not xres or not yres:
        return None, "none"
    mpp = Mpp(per / xres, per / yres)
    props["tiff.mpp-x"], props["tiff.mpp-y"] = f"{mpp.x:.6g}", f"{mpp.y:.6g}"
    if not (_plausible(mpp.x) and _plausible(mpp.y)):
        log.info(
            "%s: the TIFF resolution tags give %.4g µm/px, not a microscope scan "
            "(a screen-resolution default); treated as missing", p, mpp.x,
        )
        return None, f"ignored tiff resolution of {mpp.x:.4g} µm/px"
    return mpp, "tiff.resolution"


def _ratio(value) -> float | None:
    if isinstance(value, tuple) and len(value) == 2:
        return value[0] / value[1] if value[1] else None
    return float(value) if value else None


def _float(value) -> float | None:
    if value is None:
        return None
    try:
        out = float(re.sub(r"[^0-9.eE+-]", "", str(value)))
    except ValueError:
        return None
    return out if math.isfinite(out) and out > 0 else None


def _plausible(mpp: float) -> bool:
    return PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]


def _check_user_mpp(path: Path, mx: float, my: float) -> None:
    for v in (mx, my):
        if not (math.isfinite(v) and v > 0):
            raise SlideReadError(path, f"microns per pixel must be a positive number, got {v}")
        if not _plausible(v):
            raise SlideReadError(
                path, f"{v} µm/px is outside {PLAUSIBLE_MPP[0]}-{PLAUSIBLE_MPP[1]} µm/px, "
                "not a microscope scan resolution"
            )


def slide_layer_kwargs(slide: Slide) -> Mapping:
    """napari Image layer keyword arguments for a slide: multiscale RGB in microns."""
    mpp = slide.mpp
    scale = (mpp.y, mpp.x) if mpp is not None else (1.0, 1.0)
    units = "um" if mpp is not None else "pixel"
    return {
        "name": slide.path.stem,
        "rgb": True,
        "multiscale": len(slide.levels) > 1,
        "scale": scale,
        "units": (units, units),
        "metadata": {
            "napari_her2": {
                "path": str(slide.path),
                "mpp": None if mpp is None else [mpp.x, mpp.y],
                "mpp_source": slide.mpp_source,
                "vendor": slide.vendor,
                "magnification": slide.magnification,
                "downsamples": [list(d) for d in slide.downsamples],
            }
        },
    }


# --------------------------------------------------------------------------- writing


def write_pyramid_tiff(
    path: str | os.PathLike,
    image: np.ndarray,
    mpp: float | None,
    *,
    tile: int = 256,
    compression: str = "jpeg",
    ome: bool = False,
    min_side: int = 256,
) -> Path:
    """Write an RGB image as a tiled pyramidal TIFF, atomically (temp file then rename).

    ome=False writes a generic pyramid (one page per level, resolution tags in centimetres);
    ome=True writes an OME-TIFF whose lower levels are SubIFDs with PhysicalSize in µm.
    Used for the sample slide and for tests.
    """
    import tifffile

    out = Path(path)
    levels = [np.ascontiguousarray(image[..., :3])]
    while min(levels[-1].shape[:2]) >= 2 * min_side:
        prev = levels[-1]
        levels.append(_halve(prev[: prev.shape[0] // 2 * 2, : prev.shape[1] // 2 * 2]))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    opts = {"tile": (tile, tile), "compression": compression, "photometric": "rgb"}
    if compression == "jpeg":
        opts["compressionargs"] = {"level": 90}
    try:
        with tifffile.TiffWriter(tmp, bigtiff=image.nbytes > 2**31, ome=ome) as tw:
            for i, lvl in enumerate(levels):
                res = _resolution(mpp, 2**i)
                if ome:
                    kw = {"subifds": len(levels) - 1, "metadata": _ome_md(mpp)} if i == 0 else {
                        "subfiletype": 1}
                    tw.write(lvl, resolution=res, resolutionunit="CENTIMETER", **opts, **kw)
                else:
                    tw.write(lvl, resolution=res, resolutionunit="CENTIMETER",
                             subfiletype=0 if i == 0 else 1, metadata=None, **opts)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def _resolution(mpp: float | None, factor: int) -> tuple[float, float] | None:
    if mpp is None:
        return None
    per_cm = 1e4 / (mpp * factor)
    return (per_cm, per_cm)


def _ome_md(mpp: float | None) -> dict:
    md: dict = {"axes": "YXS"}
    if mpp is not None:
        md.update(PhysicalSizeX=mpp, PhysicalSizeXUnit="µm", PhysicalSizeY=mpp,
                  PhysicalSizeYUnit="µm")
    return md
