"""Write an RGB image as a tiled pyramidal TIFF (the sample slide, tests and benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path

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
