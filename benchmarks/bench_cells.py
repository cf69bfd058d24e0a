"""Cell-level measurement speed: ``measure_cells`` against the tile ``measure`` and a bare
colour deconvolution, in Mpx/s of tissue, measured in the same run on the same tiles.

The batch is cut from scikit-image's ``immunohistochemistry()`` image (mirrored copies to the
requested side), plus the shared BCI patches (``../shared/data/her2-ihc-bci``) when present;
all are read as 0.5 µm/px tiles, the resolution the target is stated at (a 1 Gpx slide at
0.5 µm/px in under 6 minutes: 3 Mpx/s on two cores). Each repeat times every method back to
back (interleaved, so drifting load hits all of them) and the median is reported.
``measure_cells`` runs once in one thread and once with the batch split between two threads
(numpy and scipy.ndimage release the GIL), as the scorer shares a batch between cores, and
once more in two threads as a slide is scored: every tile with the scorer's context around it
(``DabCellScorer.context_px``, cut from the same images mirrored at their edges), the rate
counted in pixels of the tiles proper. The target is judged on that last rate.

    python benchmarks/bench_cells.py [--side 2048] [--tile 256] [--repeats 3] [--no-shared]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_her2.ihc.cell_scorer import DabCellScorer  # noqa: E402
from napari_her2.ihc.cells import CellParams, cell_counts, measure_cells  # noqa: E402
from napari_her2.ihc.deconvolution import deconvolve  # noqa: E402
from napari_her2.ihc.membrane import DabMembraneParams, measure  # noqa: E402

MPP = 0.5
TARGET_MPX_S = 3.0  # 1 Gpx in 6 minutes is 2.8 Mpx/s
SHARED_BCI = Path(__file__).resolve().parents[2] / "shared" / "data" / "her2-ihc-bci"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", type=int, default=2048, help="side of the skimage IHC mosaic (px)")
    p.add_argument("--tile", type=int, default=256, help="tile side in pixels")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-shared", action="store_true", help="leave the shared BCI patches out")
    return p.parse_args(argv)


def ihc_mosaic(side: int) -> np.ndarray:
    """(side, side, 3) uint8: mirrored copies of scikit-image's IHC image."""
    from skimage.data import immunohistochemistry

    base = immunohistochemistry()
    reps = -(-side // base.shape[0])
    row = np.concatenate([base, base[:, ::-1]] * reps, axis=1)
    big = np.concatenate([row, row[::-1]] * reps, axis=0)
    return np.ascontiguousarray(big[:side, :side])


def tiles_of(image: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping (N, size, size, 3) tiles of an image (the remainder is left out)."""
    ny, nx = image.shape[0] // size, image.shape[1] // size
    cut = image[: ny * size, : nx * size]
    return cut.reshape(ny, size, nx, size, 3).transpose(0, 2, 1, 3, 4).reshape(-1, size, size, 3)


def tiles_in_context(image: np.ndarray, size: int, margin: int) -> np.ndarray:
    """The tiles of :func:`tiles_of`, each with ``margin`` px of the image around it (the
    image mirrored beyond its edges): (N, size + 2 margin, ..., 3)."""
    ny, nx = image.shape[0] // size, image.shape[1] // size
    padded = np.pad(image, ((margin, margin), (margin, margin), (0, 0)), mode="symmetric")
    side = size + 2 * margin
    return np.stack([padded[y * size : y * size + side, x * size : x * size + side]
                     for y in range(ny) for x in range(nx)])


def batch(args: argparse.Namespace, margin: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The tiles, the same tiles with ``margin`` px of context, and the names of their
    sources."""
    images = [ihc_mosaic(args.side)]
    names = [f"skimage IHC mosaic {args.side}px"]
    if not args.no_shared and SHARED_BCI.is_dir():
        from skimage.io import imread

        for path in sorted(SHARED_BCI.glob("*.png")):
            images.append(imread(path)[..., :3])
            names.append(path.name)
    bare = np.concatenate([tiles_of(im, args.tile) for im in images])
    framed = np.concatenate([tiles_in_context(im, args.tile, margin) for im in images])
    return np.ascontiguousarray(bare), np.ascontiguousarray(framed), names


def in_threads(fn: Callable[[np.ndarray], object], tiles: np.ndarray, n: int) -> None:
    """``fn`` over ``n`` slices of the batch in ``n`` threads."""
    parts = np.array_split(np.arange(len(tiles)), n)
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda idx: fn(tiles[idx]), parts))


def time_all(methods: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each method, the methods interleaved in every repeat."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    margin = DabCellScorer().at_mpp(MPP).context_px
    tiles, framed, names = batch(args, margin)
    mpx = tiles.shape[0] * tiles.shape[1] * tiles.shape[2] / 1e6
    cell_params = CellParams(mpp=MPP)
    tile_params = DabMembraneParams(mpp=MPP)
    cells = measure_cells(tiles, cell_params)  # warm-up, and the counts printed below
    counts = cell_counts(cells, len(tiles))
    methods: dict[str, Callable[[], object]] = {
        "deconvolve (bare)": lambda: deconvolve(tiles),
        "membrane.measure": lambda: measure(tiles, tile_params),
        "measure_cells, 1 thread": lambda: measure_cells(tiles, cell_params),
        "measure_cells, 2 threads": lambda: in_threads(
            lambda t: measure_cells(t, cell_params), tiles, 2),
        "in context, 2 threads": lambda: in_threads(
            lambda t: measure_cells(t, cell_params, context=margin), framed, 2),
    }
    seconds = time_all(methods, args.repeats)
    rate = {name: mpx / s for name, s in seconds.items()}

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
    print(f"batch: {len(tiles)} tiles of {args.tile}x{args.tile} px ({mpx:.1f} Mpx at "
          f"{MPP} um/px) from {', '.join(names)}; median of {args.repeats}")
    print(f"cells: {len(cells)}, tumour cells {int(counts[:, :4].sum())}; context {margin} px "
          f"({margin * MPP:g} um) on each side of a tile")
    for name, r in rate.items():
        print(f"{name:<26} {r:8.2f} Mpx/s  {1e3 * seconds[name] / len(tiles):7.2f} ms/tile")
    cells1, cells2 = rate["measure_cells, 1 thread"], rate["measure_cells, 2 threads"]
    print(f"ratio measure_cells (1 thread) / membrane.measure: "
          f"{cells1 / rate['membrane.measure']:.2f}")
    print(f"ratio measure_cells (1 thread) / deconvolve: {cells1 / rate['deconvolve (bare)']:.2f}")
    print(f"scaling 2 threads / 1 thread: {cells2 / cells1:.2f} (ideal 2)")
    framed2 = rate["in context, 2 threads"]
    print(f"ratio in context / bare tiles (2 threads): {framed2 / cells2:.2f} "
          f"(pixels measured: {(framed.shape[1] / tiles.shape[1]) ** 2:.2f}x)")
    print(f"1 Gpx slide at {MPP} um/px with 2 threads, in context: {1e3 / framed2 / 60:.1f} min")
    met = "met" if framed2 >= TARGET_MPX_S else "not met"
    print(f"target: measure_cells in context >= {TARGET_MPX_S:.1f} Mpx/s on 2 cores: {met} "
          f"(ratio {framed2 / TARGET_MPX_S:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
