"""Write an RGB image as a tiled pyramidal TIFF (the sample slide, tests and benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._model import halve


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
        levels.append(halve(prev[: prev.shape[0] // 2 * 2, : prev.shape[1] // 2 * 2]))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    compressionargs = {"level": 90} if compression == "jpeg" else None
    try:
        with tifffile.TiffWriter(tmp, bigtiff=image.nbytes > 2**31, ome=ome) as tw:
            for i, lvl in enumerate(levels):
                subifds, metadata, subfiletype = _page_layout(i, len(levels), mpp, ome)
                tw.write(lvl, tile=(tile, tile), compression=compression,
                         compressionargs=compressionargs, photometric="rgb",
                         resolution=_resolution(mpp, 2**i), resolutionunit="CENTIMETER",
                         subifds=subifds, metadata=metadata, subfiletype=subfiletype)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def _page_layout(
    level: int, n_levels: int, mpp: float | None, ome: bool
) -> tuple[int | None, dict[str, Any] | None, int | None]:
    """(subifds, metadata, subfiletype) of the page of one pyramid level.

    OME: the full-resolution page carries the OME metadata and the other levels as its
    SubIFDs, each a reduced-resolution image (subfiletype 1). Generic: one page per level,
    no metadata description; every level after the first is a reduced-resolution image.
    """
    if ome:
        return (n_levels - 1, _ome_md(mpp), None) if level == 0 else (None, {}, 1)
    return None, None, 0 if level == 0 else 1


def _resolution(mpp: float | None, factor: int) -> tuple[float, float] | None:
    if mpp is None:
        return None
    per_cm = 1e4 / (mpp * factor)
    return (per_cm, per_cm)


def _ome_md(mpp: float | None) -> dict[str, Any]:
    md: dict[str, Any] = {"axes": "YXS"}
    if mpp is not None:
        md.update(PhysicalSizeX=mpp, PhysicalSizeXUnit="µm", PhysicalSizeY=mpp,
                  PhysicalSizeYUnit="µm")
    return md
