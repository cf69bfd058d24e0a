"""Cohort scaling: ``score_cohort`` on a folder of small synthetic slides with 1 and 2 local
dask workers (one thread each), and the speed-up of 2 workers over 1.

Each cluster is started and warmed up (one slide scored, so that the workers have imported
the scorer) before the timed run; the clusters' start-up is not timed. The ideal speed-up on
N free cores is min(N, 2); on a machine shared with other jobs it is lower.

    python benchmarks/bench_batch.py [--slides 8] [--mosaic 4] [--model dab-membrane]
        [--in-process]

``--in-process`` runs the workers as threads of this process (no process start-up, one GIL:
a quick check that the script runs, not a scaling measurement).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from napari_her2._sample_data import ihc_mosaic
from napari_her2.cohort.batch import score_cohort
from napari_her2.params import ScoringParams
from napari_her2.slide import write_pyramid_tiff


def make_slides(folder: Path, n: int, mosaic: int) -> list[Path]:
    """n identical pyramid TIFFs of an IHC mosaic (mosaic x mosaic copies), 0.5 µm/px."""
    pixels = ihc_mosaic(rows=mosaic, cols=mosaic, gap=32)
    first = write_pyramid_tiff(folder / "slide-00.tif", pixels, 0.5)
    paths = [first]
    for i in range(1, n):
        path = folder / f"slide-{i:02d}.tif"
        path.write_bytes(first.read_bytes())
        paths.append(path)
    return paths


def timed_run(paths: list[Path], out: Path, params: ScoringParams, workers: int,
              processes: bool = True) -> float:
    """Seconds to score ``paths`` on a warmed-up local cluster of ``workers`` processes
    (threads of this process when ``processes`` is false)."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(workers)
        address = cluster.scheduler_address
        warm = score_cohort(paths[:workers], out / "warm-up", params=params, scheduler=address)
        assert all(r["status"] == "ok" for r in warm), warm
        t0 = time.perf_counter()
        rows = score_cohort(paths, out / f"run-{workers}", params=params, scheduler=address)
        elapsed = time.perf_counter() - t0
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} slides failed, first: {failed[0]['error']}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=8)
    ap.add_argument("--mosaic", type=int, default=4, help="copies of the IHC image per side")
    ap.add_argument("--model", default="dab-membrane")
    ap.add_argument("--tile-size", type=int, default=128)
    ap.add_argument("--in-process", action="store_true",
                    help="workers as threads of this process (quick check, not a measurement)")
    args = ap.parse_args(argv)
    params = ScoringParams().with_overrides(model_name=args.model, tile_size=args.tile_size,
                                            target_mpp=1.0, workers=1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "slides").mkdir()
        paths = make_slides(root / "slides", args.slides, args.mosaic)
        one = timed_run(paths, root, params, 1, processes=not args.in_process)
        two = timed_run(paths, root, params, 2, processes=not args.in_process)
    n = len(paths)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{n} slides ({args.mosaic}x{args.mosaic} mosaic), {args.model}"
          f"{', workers in-process' if args.in_process else ''}")
    print(f"1 worker : {one:6.2f} s  {n / one:5.2f} slides/s")
    print(f"2 workers: {two:6.2f} s  {n / two:5.2f} slides/s")
    print(f"speed-up 2 workers vs 1: {one / two:.2f}x (ideal {min(2, os.cpu_count() or 1)}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
