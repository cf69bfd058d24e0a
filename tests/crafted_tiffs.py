"""Small TIFF files whose tags lie: built by writing a tiny real TIFF and overwriting tags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

#: TIFF tag codes
IMAGE_WIDTH, IMAGE_LENGTH, ROWS_PER_STRIP = 256, 257, 278
TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS = 322, 323, 324, 325


def small_tiff(path: Path, *, size: int = 64, tile: int | None = 64,
               compression: str = "zlib", seed: int = 0) -> Path:
    """A real RGB TIFF of ``size`` px square (tiled with ``tile``, else one strip)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (size, size, 3), np.uint8)
    kw = {"tile": (tile, tile)} if tile else {"rowsperstrip": size}
    tifffile.imwrite(path, img, photometric="rgb", compression=compression, **kw)
    return path


def overwrite_tags(path: Path, values: dict[int, int]) -> Path:
    """Overwrite tags of the first page in place (tifffile moves values that grow)."""
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tags = tif.pages[0].tags
        for code, value in values.items():
            tags[code].overwrite(value)
    return path


def huge_tile_tiff(path: Path, side: int = 32768) -> Path:
    """A few-KB TIFF whose one deflate tile claims ``side`` x ``side`` px."""
    small_tiff(path, size=64, tile=64)
    return overwrite_tags(path, {IMAGE_WIDTH: side, IMAGE_LENGTH: side,
                                 TILE_WIDTH: side, TILE_LENGTH: side})


def claimed_size_tiff(path: Path, side: int = 10**6) -> Path:
    """A small strip TIFF whose tags claim ``side`` x ``side`` px in one strip."""
    small_tiff(path, size=64, tile=None)
    return overwrite_tags(path, {IMAGE_WIDTH: side, IMAGE_LENGTH: side, ROWS_PER_STRIP: side})
