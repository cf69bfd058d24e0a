"""Read every tile of a slide level: napari-her2 against openslide (and tifffile's zarr store).

For each slide, the same level is read tile by tile (256 px tiles in level pixels, edge tiles
clipped) in several ways, each from a freshly opened slide so that no decoded-tile cache
carries over between runs, and the best of ``--repeat`` runs is reported in megapixels/s:

  ours 2 thr    Slide.read_region over the tiles in a ThreadPoolExecutor(2)
  ours dask     the level's dask array computed block by block, threaded scheduler, 2 workers
  ours 1 thr    Slide.read_region over the tiles in one thread
  openslide 1   OpenSlide.read_region over the tiles in one thread (the usual script)
  openslide 2   the same in a ThreadPoolExecutor(2) (openslide-python is thread-safe)
  tifffile zarr dask.array.from_zarr over tifffile's zarr store, threaded scheduler, 2 workers

ratio = best of "ours" / openslide 1 thread (and / openslide 2 threads). Target: >= 1.5.
decodes/chunk = chunk decodes per file chunk in one (untimed) "ours 2 thr" pass: above 1.0,
two threads decoded the same chunk (tiles that share a file tile or strip).

Slides: a synthetic 8192 x 8192 JPEG pyramidal TIFF (256 px tiles, mosaic of
skimage.data.immunohistochemistry()) built in a temporary folder, every real slide in
../shared/data/slides that openslide opens, and any --slide PATH. Files are read once before
timing so that the page cache, not the disk, serves them. Prints a table; writes nothing else.

    .venv/bin/python benchmarks/bench_read.py [--slide PATH ...] [--level N] [--repeat N]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARED_SLIDES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "slides"
THREADS = 2


@dataclass
class Target:
    """One slide to measure: our path, openslide's path (None: openslide cannot open it)."""

    label: str
    path: Path
    openslide_path: Path | None


def open_ours(path: Path):
    from napari_her2 import open_slide
    from napari_her2.slide import MissingMppWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMppWarning)
        return open_slide(path)


def tiles_of(shape: tuple[int, int], tile: int) -> list[tuple[int, int, int, int]]:
    h, w = shape
    return [(y, x, min(tile, h - y), min(tile, w - x))
            for y in range(0, h, tile) for x in range(0, w, tile)]


def run_pool(func: Callable, items: list, threads: int) -> None:
    if threads == 1:
        for item in items:
            func(item)
        return
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(func, items):
            pass


# --------------------------------------------------------------------------- methods


def ours_read_region(path: Path, level: int, tile: int, threads: int) -> float:
    slide = open_ours(path)
    tiles = tiles_of(slide.levels[level].shape[:2], tile)
    t0 = time.perf_counter()
    run_pool(lambda t: slide.read_region(level, *t, strict=False), tiles, threads)
    elapsed = time.perf_counter() - t0
    slide.close()
    return elapsed


def _touch(block: np.ndarray) -> np.ndarray:
    """Reduce a decoded block to one pixel so the whole level is never held in memory."""
    return np.ascontiguousarray(block[:1, :1, :1])


def compute_blocks(array, threads: int) -> None:
    """Decode every block of a dask array (threaded scheduler) without assembling it."""
    touched = array.map_blocks(_touch, chunks=(1, 1, 1), dtype=array.dtype)
    touched.compute(scheduler="threads", num_workers=threads)


def ours_dask(path: Path, level: int, tile: int, threads: int) -> float:
    slide = open_ours(path)
    t0 = time.perf_counter()
    compute_blocks(slide.levels[level], threads)
    elapsed = time.perf_counter() - t0
    slide.close()
    return elapsed


def openslide_read_region(path: Path, level: int, tile: int, threads: int) -> float:
    import openslide

    osr = openslide.OpenSlide(str(path))
    w, h = osr.level_dimensions[level]
    ds = osr.level_downsamples[level]

    def read(t: tuple[int, int, int, int]) -> None:
        y, x, th, tw = t
        np.asarray(osr.read_region((int(x * ds), int(y * ds)), level, (tw, th)))

    tiles = tiles_of((h, w), tile)
    t0 = time.perf_counter()
    run_pool(read, tiles, threads)
    elapsed = time.perf_counter() - t0
    osr.close()
    return elapsed


def tifffile_zarr(path: Path, level: int, tile: int, threads: int) -> float:
    import dask.array as da
    import tifffile
    import zarr

    store = tifffile.imread(path, aszarr=True, level=level)
    try:
        array = zarr.open(store, mode="r")
        blocks = open_ours(path).levels[level].chunksize  # the same blocks as ours
        t0 = time.perf_counter()
        compute_blocks(da.from_zarr(array, chunks=blocks), threads)
        return time.perf_counter() - t0
    finally:
        store.close()


def decodes_per_chunk(path: Path, level: int, tile: int, threads: int) -> float | None:
    """Chunk decodes per file chunk when reading every tile with ``threads`` threads."""
    slide = open_ours(path)
    if level >= len(slide.readers):
        return None
    reader = slide.readers[level]
    original, count, lock = reader.decode, [0], threading.Lock()

    def counting(iy: int, ix: int):
        with lock:
            count[0] += 1
        return original(iy, ix)

    reader.decode = counting
    run_pool(lambda t: slide.read_region(level, *t, strict=False),
             tiles_of(reader.shape, tile), threads)
    slide.close()
    return count[0] / (reader.grid[0] * reader.grid[1])


# --------------------------------------------------------------------------- runner


def best_of(repeat: int, func: Callable[[], float]) -> float:
    return min(func() for _ in range(repeat))


def warm_page_cache(path: Path) -> None:
    for f in ([path] if path.is_file() else sorted(path.iterdir())):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def measure(target: Target, level: int, tile: int, repeat: int) -> dict | None:
    slide = open_ours(target.path)
    if level >= slide.level_count:
        return None
    h, w = slide.levels[level].shape[:2]
    file_tile = slide.readers[level].chunk if level < len(slide.readers) else None
    blocks = slide.levels[level].chunksize[:2]
    slide.close()
    warm_page_cache(target.path)
    mpx = h * w / 1e6
    row: dict = {"slide": target.label, "level": level, "size": f"{w}x{h}",
                 "file tile": "x".join(map(str, file_tile[::-1])) if file_tile else "lazy",
                 "dask block": f"{blocks[1]}x{blocks[0]}"}

    def rate(func: Callable, path: Path, threads: int) -> float:
        return mpx / best_of(repeat, lambda: func(path, level, tile, threads))

    row["ours 2 thr"] = rate(ours_read_region, target.path, THREADS)
    row["ours dask"] = rate(ours_dask, target.path, THREADS)
    row["ours 1 thr"] = rate(ours_read_region, target.path, 1)
    if target.openslide_path is not None:
        row["openslide 1"] = rate(openslide_read_region, target.openslide_path, 1)
        row["openslide 2"] = rate(openslide_read_region, target.openslide_path, THREADS)
    if target.path.is_file():
        row["tifffile zarr"] = rate(tifffile_zarr, target.path, THREADS)
    row["decodes/chunk"] = decodes_per_chunk(target.path, level, tile, THREADS)
    if mpx < 1:
        row["slide"] += " (tiny)"
    ours = max(row["ours 2 thr"], row["ours dask"])
    if "openslide 1" in row:
        row["ratio/os1"] = ours / row["openslide 1"]
        row["ratio/os2"] = ours / row["openslide 2"]
    return row


def openslide_opens(path: Path) -> Path | None:
    """The path openslide opens for a slide (one .dcm of a DICOM folder), or None."""
    import openslide

    candidate = max(path.glob("*.dcm"), key=lambda f: f.stat().st_size) if path.is_dir() else path
    try:
        openslide.OpenSlide(str(candidate)).close()
    except openslide.OpenSlideError:
        return None
    return candidate


def build_synthetic(folder: Path, size: int) -> Path:
    from skimage.data import immunohistochemistry

    from napari_her2.slide import write_pyramid_tiff

    base = immunohistochemistry()
    bh, bw = base.shape[:2]
    image = np.empty((size, size, 3), np.uint8)
    for k, y in enumerate(range(0, size, bh)):
        for j, x in enumerate(range(0, size, bw)):
            piece = np.rot90(base, (k + j) % 4)[:: -1 if k % 2 else 1]
            image[y : y + bh, x : x + bw] = piece[: size - y, : size - x]
    return write_pyramid_tiff(folder / f"synthetic-{size}.tif", image, 0.5, tile=256,
                              compression="jpeg")


def collect_targets(args, tmp: Path) -> list[Target]:
    targets: list[Target] = []
    if not args.no_synthetic:
        path = build_synthetic(tmp, args.size)
        targets.append(Target(f"synthetic {args.size}px JPEG", path, path))
    shared = [] if args.no_shared or not SHARED_SLIDES.is_dir() else sorted(SHARED_SLIDES.iterdir())
    for path in shared + [Path(p) for p in args.slide]:
        if path.suffix == ".png":
            continue
        os_path = openslide_opens(path)
        if os_path is None and path.parent == SHARED_SLIDES:
            print(f"# {path.name}: openslide cannot open it; skipped")
            continue
        targets.append(Target(path.name, path, os_path))
    return targets


COLUMNS = ["slide", "level", "size", "file tile", "dask block", "ours 2 thr", "ours dask",
           "ours 1 thr", "openslide 1", "openslide 2", "tifffile zarr", "ratio/os1", "ratio/os2",
           "decodes/chunk"]


def print_table(rows: list[dict]) -> None:
    def cell(row: dict, col: str) -> str:
        value = row.get(col)
        if value is None:
            return "-"
        if isinstance(value, float):
            if col.startswith("ratio"):
                return f"{value:.2f}x"
            return f"{value:.2f}" if col == "decodes/chunk" else f"{value:.1f}"
        return str(value)

    table = [COLUMNS] + [[cell(r, c) for c in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for n, line in enumerate(table):
        print("  ".join(v.ljust(wd) if i == 0 else v.rjust(wd)
                        for i, (v, wd) in enumerate(zip(line, widths))))
        if n == 0:
            print("  ".join("-" * wd for wd in widths))


def describe_machine() -> str:
    import dask
    import openslide
    import tifffile

    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    return (f"machine: {cpu}, {usable} usable cores ({os.cpu_count()} logical){load}; "
            f"python {platform.python_version()}; openslide {openslide.__library_version__} "
            f"(python {openslide.__version__}); tifffile {tifffile.__version__}; "
            f"dask {dask.__version__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slide", action="append", default=[], help="any slide (repeatable)")
    parser.add_argument("--level", type=int, default=0, help="level to read (default 0)")
    parser.add_argument("--tile", type=int, default=256, help="read tile size in px")
    parser.add_argument("--size", type=int, default=8192, help="synthetic slide side in px")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method (best kept)")
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument("--no-shared", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("napari_her2").setLevel(logging.ERROR)  # e.g. boxes.tiff's 72 dpi note
    print(describe_machine())
    print(f"read: every {args.tile}x{args.tile} tile of level {args.level}; megapixels/s, "
          f"best of {args.repeat}; ratio = best 2-thread ours / openslide; (tiny): under 1 Mpx, overhead-bound")
    with tempfile.TemporaryDirectory(prefix="napari-her2-bench-") as tmp:
        rows = []
        for target in collect_targets(args, Path(tmp)):
            row = measure(target, args.level, args.tile, args.repeat)
            if row is None:
                print(f"# {target.label}: no level {args.level}; skipped")
                continue
            rows.append(row)
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
