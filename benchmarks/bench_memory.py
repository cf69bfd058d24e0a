"""Peak memory of scoring a 100,000 x 100,000 px slide (target: under 2 GB).

Builds (once, in --folder) a pyramidal JPEG TIFF of 100,000 x 100,000 px at 0.5 µm/px:
white glass with a few pieces of real IHC tissue (tiles of ``skimage.data.immunohistochemistry``),
written tile by tile so building it needs little memory either. Then, each in a fresh
process, measures the peak resident memory of
  baseline   importing napari_her2 and opening the slide
  score      score_slide with dab-membrane (tissue mask, grid, all tissue tiles)
and prints both, the target and the ratio.

    python benchmarks/bench_memory.py [--side 100000] [--folder /tmp/napari-her2-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TILE = 256
TARGET_BYTES = 2 * 1024**3


def _tissue_tile(iy: int, ix: int, base: np.ndarray) -> np.ndarray:
    y, x = (iy * TILE) % (base.shape[0] - TILE), (ix * TILE) % (base.shape[1] - TILE)
    return base[y : y + TILE, x : x + TILE]


def _is_tissue(iy: int, ix: int, n: int, side_tiles: int) -> bool:
    """Four square pieces of tissue, each about 1/40 of the slide's side."""
    piece = max(2, side_tiles // 40)
    for k in range(4):
        cy = cx = (k + 1) * side_tiles // 5
        if abs(iy - cy) < piece and abs(ix - cx) < piece:
            return True
    return False


def build_slide(path: Path, side: int) -> Path:
    import tifffile
    from skimage.data import immunohistochemistry

    base = immunohistochemistry()
    white = np.full((TILE, TILE, 3), 255, np.uint8)
    levels = []
    s = side
    while s >= 2048:
        levels.append(s)
        s //= 2
    tmp = path.with_suffix(".tmp")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        for i, lside in enumerate(levels):
            n = -(-lside // TILE)
            factor = side // lside
            full = -(-side // TILE)

            def tiles(n=n, factor=factor, full=full):
                for iy in range(n):
                    for ix in range(n):
                        tissue = _is_tissue(iy * factor, ix * factor, n, full)
                        yield _tissue_tile(iy, ix, base) if tissue else white

            per_cm = 1e4 / (0.5 * factor)
            tw.write(tiles(), shape=(lside, lside, 3), dtype=np.uint8, tile=(TILE, TILE),
                     compression="jpeg", photometric="rgb", resolution=(per_cm, per_cm),
                     resolutionunit="CENTIMETER", subfiletype=0 if i == 0 else 1)
    os.replace(tmp, path)
    return path


CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import napari_her2
slide = napari_her2.open_slide(sys.argv[2])
out = {}
if sys.argv[1] == "score":
    t0 = time.perf_counter()
    report = napari_her2.score_slide(slide, "dab-membrane")
    out = {"tiles": len(report.results), "seconds": time.perf_counter() - t0,
           "score": report.to_dict()["score"]}
out["peak_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""


def measure(mode: str, path: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, mode, str(path)], capture_output=True,
                         text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=100_000, help="slide side in px (>= 2048)")
    ap.add_argument("--folder", type=Path, default=Path("/tmp/napari-her2-bench"))
    args = ap.parse_args(argv)
    if args.side < 2048:
        ap.error("--side must be at least 2048 px (the smallest pyramid level)")
    args.folder.mkdir(parents=True, exist_ok=True)
    path = args.folder / f"big-{args.side}.tif"
    if not path.exists():
        t0 = time.perf_counter()
        build_slide(path, args.side)
        print(f"built {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    base = measure("open", path)
    run = measure("score", path)
    gib = 1024**2
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores")
    print(f"slide: {args.side} x {args.side} px, {run['tiles']} tissue tiles scored in "
          f"{run['seconds']:.1f} s (score {run['score']})")
    print(f"baseline (import + open) peak RSS: {base['peak_kib'] / gib:.2f} GiB")
    print(f"score_slide peak RSS:              {run['peak_kib'] / gib:.2f} GiB")
    print(f"ratio score / baseline = {run['peak_kib'] / base['peak_kib']:.2f}; "
          f"ratio score / 2 GiB target = {run['peak_kib'] * 1024 / TARGET_BYTES:.2f} "
          "(target < 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
