"""Tiles of labelled images, cut through napari-her2's tissue and tiling code, cached.

Each image is opened with :func:`napari_her2.open_slide` (lazy: never a whole slide in
memory), its tissue found with :func:`napari_her2.ihc.tissue.detect_tissue`, gridded with
:func:`napari_her2.tiles.grid.make_grid` at the model's tile size and µm/px, and its tissue tiles
read a row run at a time (one region read for up to ``RUN_WIDTH`` neighbouring tiles, resized
as :func:`napari_her2.run.inference.read_tile` resizes them). The uint8 tiles of one image
are cached as ``<cache>/<sha256[:16]>_<size>px_<mpp>um_<min_tissue>_<max_tiles>.npz``.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from napari_her2 import open_slide
from napari_her2.errors import Her2Error
from napari_her2.ihc.tissue import detect_tissue
from napari_her2.models.preprocess import resize_tile
from napari_her2.run.inference import read_tile
from napari_her2.tiles.grid import make_grid

from .errors import DatasetError
from .geojson import label_points, read_regions, tile_centres
from .labels import NO_LABEL, LabeledImage

log = logging.getLogger(__name__)

#: most tiles read with one region read (bounds the memory of a read)
RUN_WIDTH = 32


@dataclass(frozen=True)
class TileSpec:
    """How tiles are cut: side in pixels, µm/px, minimum tissue fraction, tiles per image
    (a seeded, evenly spread subset when an image has more), and the slides' own µm/px when
    the files do not give it (None: from the file)."""

    tile_size: int = 64
    target_mpp: float = 1.0
    min_tissue: float = 0.5
    max_tiles: int = 400
    slide_mpp: float | None = None


@dataclass(frozen=True)
class ImageTiles:
    """The tiles of one image: uint8 (N, S, S, 3), their labels (N,) and grid cells (N, 2)."""

    image: LabeledImage
    tiles: np.ndarray
    labels: np.ndarray
    cells: np.ndarray
    sha256: str

    def __len__(self) -> int:
        return len(self.tiles)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file (a DICOM folder: of its files in name order)."""
    digest = hashlib.sha256()
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def _cache_file(cache: Path, sha: str, spec: TileSpec) -> Path:
    mpp = "file" if spec.slide_mpp is None else f"{spec.slide_mpp:g}"
    key = (f"{sha[:16]}_{spec.tile_size}px_{spec.target_mpp:g}um_{spec.min_tissue:g}"
           f"_{spec.max_tiles}_{mpp}")
    return cache / f"{key}.npz"


def _subset(n: int, k: int) -> np.ndarray:
    """k evenly spread indices of n (all when n <= k): deterministic, spatially spread."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


def _runs(rows: np.ndarray, cols: np.ndarray, width: int) -> list[tuple[int, int, int]]:
    """(row, first col, last col) runs of tiles to read together: consecutive columns of
    one grid row (gaps up to 2 tiles bridged), at most ``width`` tiles wide."""
    runs: list[list[int]] = []
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        if runs and runs[-1][0] == r and c - runs[-1][2] <= 3 and c - runs[-1][1] < width:
            runs[-1][2] = c
        else:
            runs.append([r, c, c])
    return [(r, a, b) for r, a, b in runs]


def _read_run(slide, grid, row: int, c0: int, c1: int) -> dict[int, np.ndarray]:
    """Tiles (row, c0..c1) from one region read; a failed read falls back to single tiles."""
    rh, rw = grid.read_size
    y, x = grid.level_origin(row, c0)
    try:
        band = slide.read_region(grid.level, y, x, rh, rw * (c1 - c0 + 1), strict=True)
    except Her2Error:
        return {c: read_tile(slide, grid, row, c) for c in range(c0, c1 + 1)}
    return {c: resize_tile(band[:, (c - c0) * rw:(c - c0 + 1) * rw], grid.tile_size)
            for c in range(c0, c1 + 1)}


def _cut(item: LabeledImage, spec: TileSpec) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(tiles, cells, tile_size0) of the tissue tiles of one image, read a row run at a time."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a missing µm/px is reported below
        slide = open_slide(item.path, mpp=spec.slide_mpp)
    if slide.mpp is None:
        raise DatasetError(f"{item.path}: the file gives no microns per pixel; "
                           "pass the dataset's value with --mpp")
    grid = make_grid(slide, detect_tissue(slide), tile_size=spec.tile_size,
                     target_mpp=spec.target_mpp, min_tissue=spec.min_tissue)
    rows, cols = grid.tissue_tiles()
    keep = _subset(len(rows), spec.max_tiles)
    rows, cols = rows[keep], cols[keep]
    tiles, cells = [], []
    for r, c0, c1 in _runs(rows, cols, RUN_WIDTH):
        got = _read_run(slide, grid, r, c0, c1)
        for c in cols[(rows == r) & (cols >= c0) & (cols <= c1)].tolist():
            if got.get(c) is not None:
                tiles.append(got[c])
                cells.append((r, c))
    size = spec.tile_size
    arr = np.stack(tiles) if tiles else np.zeros((0, size, size, 3), np.uint8)
    return arr, np.asarray(cells, np.int64).reshape(-1, 2), tuple(grid.tile_size0)


def load_tiles(item: LabeledImage, spec: TileSpec, cache: Path | None = None) -> ImageTiles:
    """The tiles of one image (from the cache when present) with their labels.

    Image-level labels are given to every tile (weak labels); with a GeoJSON file the tiles
    take the annotation's class and tiles outside every annotation are dropped.
    """
    sha = file_sha256(item.path)
    file = _cache_file(cache, sha, spec) if cache is not None else None
    if file is not None and file.is_file():
        with np.load(file) as z:
            tiles, cells, size0 = z["tiles"], z["cells"], tuple(z["tile_size0"])
    else:
        tiles, cells, size0 = _cut(item, spec)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(".tmp.npz")
            np.savez(tmp, tiles=tiles, cells=cells, tile_size0=np.asarray(size0))
            tmp.replace(file)
    labels = np.full(len(tiles), item.label, np.int64)
    if item.geojson is not None:
        xy = tile_centres(cells[:, 0], cells[:, 1], size0)
        labels = label_points(read_regions(item.geojson), xy)
        keep = labels != NO_LABEL
        tiles, cells, labels = tiles[keep], cells[keep], labels[keep]
    log.info("%s: %d tiles", item.path.name, len(tiles))
    return ImageTiles(item, tiles, labels, cells, sha)


def load_dataset(items: list[LabeledImage], spec: TileSpec,
                 cache: Path | None = None) -> list[ImageTiles]:
    """Tiles of every image; images without any tile are left out with a warning."""
    out = []
    for item in items:
        t = load_tiles(item, spec, cache)
        if len(t) == 0:
            log.warning("%s: no tissue tile at %d px / %g µm/px; left out",
                        item.path, spec.tile_size, spec.target_mpp)
            continue
        out.append(t)
    if not out:
        raise DatasetError("no image gave any tissue tile; check --mpp and the tile size")
    return out


def manifest(images: list[ImageTiles]) -> list[dict]:
    """Files of a run with sha256, label, group and tile count (for manifest.json)."""
    return [{"file": str(t.image.path), "sha256": t.sha256, "label": int(t.image.label),
             "group": t.image.group, "n_tiles": len(t),
             "geojson": str(t.image.geojson) if t.image.geojson else None} for t in images]
