"""Export speed: QuPath GeoJSON of 100,000 scored tiles, against the 5 s target.

Builds synthetic TileResults (the dab-membrane scorer's classes and features, seeded random
probabilities), converts them to GeoJSON, validates and writes the file atomically, and prints
each step's time and the ratio of the total to the 5 s target (< 1 is within target).

    python benchmarks/bench_export.py [--tiles 100000] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_her2.export import tiles_to_geojson, validate_qupath_geojson, write_geojson
from napari_her2.ihc.membrane import CLASSES, FEATURE_NAMES
from napari_her2.tiles.results import TileResults

TARGET_S = 5.0


def synthetic_results(n_tiles: int, seed: int = 0) -> TileResults:
    """n_tiles scored tiles on a square grid, 1% of them unreadable."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_tiles)))
    idx = np.arange(n_tiles)
    probs = rng.dirichlet(np.full(len(CLASSES), 0.5), size=n_tiles).astype(np.float32)
    readable = rng.random(n_tiles) >= 0.01
    probs[~readable] = np.nan
    return TileResults(
        classes=CLASSES, feature_names=FEATURE_NAMES, grid_shape=(side, side),
        origin0=(0.0, 0.0), tile_size0=(512.0, 512.0),
        rows=(idx // side).astype(np.int32), cols=(idx % side).astype(np.int32), probs=probs,
        features=rng.random((n_tiles, len(FEATURE_NAMES))).astype(np.float32),
        readable=readable,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=100_000)
    ap.add_argument("--out", default=None, help="folder for the file (default: a temp folder)")
    args = ap.parse_args(argv)
    results = synthetic_results(args.tiles)
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        path = Path(tmp) / "tiles.geojson"
        t0 = time.perf_counter()
        fc = tiles_to_geojson(results, name="bench")
        t1 = time.perf_counter()
        problems = validate_qupath_geojson(fc)
        t2 = time.perf_counter()
        write_geojson(path, fc)
        t3 = time.perf_counter()
        size_mb = path.stat().st_size / 1e6
    build, check, write = t1 - t0, t2 - t1, t3 - t2
    export = build + write
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"tiles: {args.tiles}  file: {size_mb:.1f} MB  validator problems: {len(problems)}")
    print(f"build FeatureCollection: {build:.2f} s")
    print(f"write (json + fsync + rename): {write:.2f} s")
    print(f"export total (build + write): {export:.2f} s  target {TARGET_S:.0f} s  "
          f"ratio {export / TARGET_S:.2f} ({'PASS' if export < TARGET_S else 'FAIL'})")
    print(f"optional QuPath validation: {check:.2f} s")

    return 0


if __name__ == "__main__":
    sys.exit(main())
