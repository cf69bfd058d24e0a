"""Vendor metadata of TIFF-family slides: one small parser per vendor, chosen from a table.

Each parser turns what its vendor writes (Aperio's ImageDescription, Hamamatsu's NDPI tags,
OME-XML) into a :class:`SlideMeta`: the vendor, microns per pixel with where it came from, the
objective magnification and the raw properties. A vendor without a usable mpp falls back to the
TIFF resolution tags. Adding a vendor is adding a row to :data:`VENDOR_PARSERS`.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._model import Mpp, plausible_mpp

log = logging.getLogger(__name__)


@dataclass
class SlideMeta:
    """What a vendor parser found in a slide's metadata."""

    vendor: str
    mpp: Mpp | None = None
    mpp_source: str = "none"
    magnification: float | None = None
    properties: dict[str, str] = field(default_factory=dict)


def _aperio_meta(p: Path, tif: Any, page: Any) -> SlideMeta:
    props: dict[str, str] = {}
    for part in page.description.split("|")[1:]:
        key, sep, value = part.partition("=")
        if sep:
            props[f"aperio.{key.strip()}"] = value.strip()
    meta = SlideMeta(vendor="aperio", properties=props)
    mpp = _float(props.get("aperio.MPP"))
    if mpp is not None and plausible_mpp(mpp):
        meta.mpp, meta.mpp_source = Mpp(mpp, mpp), "aperio.MPP"
    meta.magnification = _float(props.get("aperio.AppMag"))
    return meta


def _ndpi_meta(p: Path, tif: Any, page: Any) -> SlideMeta:
    tags = getattr(page, "ndpi_tags", None) or {}
    props = {
        f"hamamatsu.{k}": str(v)
        for k, v in tags.items()
        if isinstance(v, str | int | float) and k not in ("McuStarts", "Comments")
    }
    meta = SlideMeta(vendor="hamamatsu", properties=props)
    meta.magnification = _float(tags.get("Magnification"))
    return meta


_OME_UNITS = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}


def _ome_meta(p: Path, tif: Any, page: Any) -> SlideMeta:
    meta = SlideMeta(vendor="ome")
    xml = tif.ome_metadata
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
        if sx and ux and plausible_mpp(sx * ux):
            my = sy * uy if sy and uy else sx * ux
            meta.mpp, meta.mpp_source = Mpp(sx * ux, my), "ome.PhysicalSize"
    for el in root.iter():
        if el.tag.endswith("Objective"):
            meta.magnification = _float(el.get("NominalMagnification"))
            break
    return meta


def _generic_meta(p: Path, tif: Any, page: Any) -> SlideMeta:
    return SlideMeta(vendor="generic-tiff")


#: (tifffile's flag on the parsed file, parser); the first flag that is set wins
VENDOR_PARSERS: tuple[tuple[str, Callable[[Path, Any, Any], SlideMeta]], ...] = (
    ("is_svs", _aperio_meta),
    ("is_ndpi", _ndpi_meta),
    ("is_ome", _ome_meta),
)


def tiff_metadata(p: Path, tif: Any, page: Any) -> SlideMeta:
    """The metadata of a parsed TIFF: its vendor's parser, then the resolution tags."""
    parser = next((f for flag, f in VENDOR_PARSERS if getattr(tif, flag, False)), _generic_meta)
    meta = parser(p, tif, page)
    if meta.mpp is None:
        meta.mpp, meta.mpp_source = resolution_tag_mpp(p, page, meta.properties)
    return meta


def resolution_tag_mpp(p: Path, page, props: dict[str, str]) -> tuple[Mpp | None, str]:
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
    if not (plausible_mpp(mpp.x) and plausible_mpp(mpp.y)):
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


