"""Viewing through napari's own fetch path: napari-her2 against napari-wsi, and against the
floors of that path, cold and on a warm revisit.

The slide is the BCI mosaic (``bci_fixture.py``; --scale 16: 16,384 px, levels 16k / 4k / 1k,
256 px JPEG tiles). A seeded sequence of viewports on a 1600 x 1000 px canvas (centre uniform
over the slide, level-0 pixels per screen pixel log-uniform from 0.5 to the whole-slide view)
is fetched the way napari 0.9 fetches a multiscale image on a camera move, with napari's own
functions: ``compute_multiscale_level_and_corners`` picks the level and the region,
``expand_corners_to_chunk_boundaries`` widens it to whole chunks of the array, a view inside
the last fetched region of the same level fetches nothing, and the fetch
``np.asarray(level[y0:y1, x0:x1])`` runs inside ``configure_dask`` (task fusion off, napari's
opportunistic dask cache on; ``--no-napari-cache`` turns the cache off). Each reader runs in a
fresh process: open, the coarsest level (napari's thumbnail), the sequence once (cold), then
the same sequence again (warm: panning back to where one was).

Readers
  ours        napari_her2's reader: the dask arrays it hands napari
  napari-wsi  napari-wsi's OpenSlide reader (when napari-wsi and openslide import)
  in-RAM      the baseline measured in every run: our levels with every block decoded and
              held in memory first (untimed, dask ``persist``), handed to napari as they are.
              Reading costs nothing here, so its times are what napari's path itself costs
              (dask, the cache, assembling the region into a new array): the floor for any
              reader that hands napari dask arrays of these chunks
  bare        the cold floor of reading: for each fetch ours makes, the file's tiles under it
              read with ``os.pread`` + ``imagecodecs.jpeg8_decode`` in 2 threads straight into
              one new array (no dask, no napari, no cache: warm is the same work again)

Printed per reader: median and 95th percentile of the fetch times (median over runs of each
run's statistic; views napari does not fetch for are left out), pixels per fetch; then the
ratios ours / napari-wsi (targets: cold and warm medians <= 0.5), ours / in-RAM and ours /
bare, each the median over runs of the ratio inside a run [min-max over runs]. The readers
take turns inside a run, in an order that rotates from run to run.

    .venv/bin/python benchmarks/bench_napari_view.py [--scale 16] [--runs 3] [--n 40]
        [--workdir DIR] [--readers ours,napari-wsi,in-RAM,bare] [--no-napari-cache]
    .venv/bin/python benchmarks/bench_napari_view.py --quick    # the smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bci_fixture import fixture  # noqa: E402

CANVAS = (1000, 1600)  # screen rows, columns
MIN_D = 0.5  # level-0 px per screen px when zoomed in furthest (2x over-zoom)
READERS = ("ours", "napari-wsi", "in-RAM", "bare")
TARGET = 0.5  # ours / napari-wsi, cold and warm medians


# --------------------------------------------------------------------------- viewports


def viewports(shape0: tuple[int, int], n: int, seed: int) -> list[tuple[float, float, float]]:
    """n views (centre y, centre x, level-0 px per screen px), seeded."""
    h, w = shape0
    fit = max(h / CANVAS[0], w / CANVAS[1], MIN_D * 1.01)
    rng = np.random.default_rng(seed)
    views = []
    for _ in range(n):
        d = math.exp(rng.uniform(math.log(MIN_D), math.log(fit)))
        views.append((float(rng.uniform(0, h)), float(rng.uniform(0, w)), float(d)))
    return views


class Planner:
    """What napari fetches for a view: (level, (y0, y1, x0, x1)) or (level, None)."""

    def __init__(self, levels: list) -> None:
        from napari.layers.utils.layer_utils import (
            compute_multiscale_level_and_corners,
            expand_corners_to_chunk_boundaries,
        )

        self.levels = levels
        self.pick = compute_multiscale_level_and_corners
        self.widen = expand_corners_to_chunk_boundaries
        h0, w0 = levels[0].shape[:2]
        self.downsamples = np.array([[h0 / a.shape[0], w0 / a.shape[1]] for a in levels])
        self.last: tuple[int, np.ndarray] | None = None

    def __call__(self, cy: float, cx: float, d: float):
        box = np.array([[math.floor(cy - CANVAS[0] / 2 * d), math.floor(cx - CANVAS[1] / 2 * d)],
                        [math.ceil(cy + CANVAS[0] / 2 * d), math.ceil(cx + CANVAS[1] / 2 * d)]])
        level, corners2 = self.pick(box, np.array(CANVAS), self.downsamples)
        corners = np.zeros((2, 3), int)
        corners[:, :2] = np.clip(corners2, 0, np.array(self.levels[level].shape[:2]) - 1)
        if np.any(corners[1, :2] == corners[0, :2]):
            return level, None
        corners = self.widen(corners, self.levels[level], [0, 1])
        if (self.last is not None and self.last[0] == level
                and np.all(corners[0, :2] >= self.last[1][0, :2])
                and np.all(corners[1, :2] <= self.last[1][1, :2])):
            return level, None  # napari keeps what it has: the view is inside it
        self.last = (level, corners)
        return level, (int(corners[0, 0]), int(corners[1, 0]) + 1,
                       int(corners[0, 1]), int(corners[1, 1]) + 1)


# --------------------------------------------------------------------------- readers


def ours_levels(path: Path) -> list:
    from napari_her2._reader import read_slide_layers

    (data, _kwargs, _kind), = read_slide_layers(str(path))
    return list(data)


def wsi_levels(path: Path) -> list:
    from napari_wsi.reader import wsi_reader_openslide

    (data, _kwargs, _kind), = wsi_reader_openslide(str(path))(str(path))
    return list(data) if isinstance(data, list | tuple) else [data]


def in_ram_levels(path: Path) -> list:
    """Our levels with every block decoded and held in memory (dask ``persist``): the same
    chunks, each block its own array, as napari's cache holds them."""
    import dask

    return list(dask.persist(*ours_levels(path), scheduler="threads", num_workers=2))


class BareFetch:
    """The file's tiles under a region, pread + decoded in 2 threads into one new array."""

    def __init__(self, path: Path, threads: int) -> None:
        import imagecodecs
        import tifffile

        self.decode = imagecodecs.jpeg8_decode
        self.fd = os.open(path, os.O_RDONLY)
        self.pages = []
        with tifffile.TiffFile(path) as tif:
            for level in tif.series[0].levels:
                page = level.keyframe
                self.pages.append((int(page.shape[0]), int(page.shape[1]),
                                   int(page.chunks[0]), int(page.chunks[1]),
                                   list(page.dataoffsets), list(page.databytecounts),
                                   page.jpegtables))
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(threads)

    def __call__(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        h, w, ch, cw, offsets, counts, tables = self.pages[level]
        out = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
        nx = -(-w // cw)

        def one(cell: tuple[int, int]) -> None:
            iy, ix = cell
            i = iy * nx + ix
            tile = self.decode(os.pread(self.fd, counts[i], offsets[i]), tables=tables)
            ty, tx = iy * ch, ix * cw
            sy0, sx0 = max(ty, y0), max(tx, x0)
            sy1, sx1 = min(ty + ch, y1, h), min(tx + cw, x1, w)
            out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tile[sy0 - ty : sy1 - ty,
                                                                 sx0 - tx : sx1 - tx, :3]

        cells = [(iy, ix) for iy in range(y0 // ch, (y1 - 1) // ch + 1)
                 for ix in range(x0 // cw, (x1 - 1) // cw + 1)]
        for _ in self.pool.map(one, cells):
            pass
        return out


# --------------------------------------------------------------------------- one reader


def use_chunk(target: int | None) -> None:
    """Diagnostic: give our levels dask blocks of about ``target`` px (None: as shipped)."""
    if not target:
        return
    import functools

    from napari_her2.slide import _model

    _model.dask_chunks = functools.partial(_model.dask_chunks, target=target)


def worker(reader: str, path: Path, n: int, seed: int, threads: int, napari_cache: bool,
           chunk: int | None = None) -> dict:
    """Open with ``reader``, then a cold and a warm pass; latencies in seconds."""
    import contextlib

    import dask

    dask.config.set(scheduler="threads", num_workers=threads)
    import openslide  # noqa: F401 - imports are not part of the open time
    from napari.utils._dask_utils import configure_dask

    import napari_her2._reader  # noqa: F401

    if reader == "napari-wsi":
        import napari_wsi.reader  # noqa: F401
    use_chunk(chunk)

    t0 = time.perf_counter()
    if reader == "napari-wsi":
        levels = wsi_levels(path)
    elif reader == "in-RAM":
        levels = in_ram_levels(path)
    else:
        levels = ours_levels(path)
    ctx = configure_dask(levels, cache=napari_cache) if reader != "bare" else \
        contextlib.nullcontext
    fetch_bare = BareFetch(path, threads) if reader == "bare" else None
    with ctx():
        np.asarray(levels[-1])  # napari's thumbnail: the coarsest level, whole
    open_s = time.perf_counter() - t0
    plan = Planner(levels)
    views = viewports(levels[0].shape[:2], n, seed)

    def one_pass() -> dict:
        plan.last = None  # each pass fetches the same sequence: the warm one revisits it
        lat, px, skipped = [], [], 0
        for view in views:
            level, box = plan(*view)
            if box is None:
                skipped += 1
                continue
            y0, y1, x0, x1 = box
            t = time.perf_counter()
            if fetch_bare is not None:
                out = fetch_bare(level, y0, y1, x0, x1)
            else:
                with ctx():
                    out = np.asarray(levels[level][y0:y1, x0:x1])
            lat.append(time.perf_counter() - t)
            assert out.shape[:2] == (y1 - y0, x1 - x0), (out.shape, box)
            px.append(int((y1 - y0) * (x1 - x0)))
        return {"lat": lat, "px": px, "skipped": skipped}

    cold = one_pass()
    warm = one_pass()
    chunks = [int(c[0]) for c in levels[0].chunks[:2]] if hasattr(levels[0], "chunks") else None
    return {"reader": reader, "open_s": open_s, "cold": cold, "warm": warm, "chunk": chunks,
            "channels": int(levels[0].shape[2])}


def clear_napari_cache() -> None:
    try:
        from napari.utils._dask_utils import _DASK_CACHE

        _DASK_CACHE.cache.clear()
    except (ImportError, AttributeError):
        pass


def run_one(args, reader: str, path: Path, run: int) -> dict | None:
    with open(path, "rb") as fh:  # the page cache holds the file for every reader
        while fh.read(1 << 24):
            pass
    if args.in_process:
        clear_napari_cache()
        res = worker(reader, path, args.n, args.seed, args.threads, not args.no_napari_cache,
                     args.chunk)
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", reader,
               "--slide", str(path), "--n", str(args.n), "--seed", str(args.seed),
               "--threads", str(args.threads), "--chunk", str(args.chunk or 0)] + (
                   ["--no-napari-cache"] if args.no_napari_cache else [])
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1")
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(f"# {reader} run {run} failed: {proc.stderr.strip()[-1500:]}")
            return None
        res = json.loads(line[len("RESULT "):])
    res["run"] = run
    return res


# --------------------------------------------------------------------------- summary


def _q(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def summarize(results: list[dict]) -> dict[str, dict[str, float]]:
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["reader"], []).append(r)
    stats: dict[str, dict[str, float]] = {}
    print(f"\n{'reader':<11} {'runs':>4} {'open ms':>8} {'cold med':>9} {'cold p95':>9} "
          f"{'warm med':>9} {'warm p95':>9} {'Mpx/fetch':>9} {'fetches':>7}  chunk")
    for reader in READERS:
        rs = by.get(reader)
        if not rs:
            continue
        s = {
            "open": statistics.median(r["open_s"] for r in rs),
            "cold": statistics.median(_q(r["cold"]["lat"], 50) for r in rs),
            "cold95": statistics.median(_q(r["cold"]["lat"], 95) for r in rs),
            "warm": statistics.median(_q(r["warm"]["lat"], 50) for r in rs),
            "warm95": statistics.median(_q(r["warm"]["lat"], 95) for r in rs),
            "mpx": statistics.median(_q(r["cold"]["px"], 50) / 1e6 for r in rs),
        }
        stats[reader] = s
        fetches = len(rs[0]["cold"]["lat"])
        chunk = rs[0].get("chunk")
        chunk_s = f"{chunk[0]}x{chunk[1]}x{rs[0]['channels']}" if chunk else "-"
        print(f"{reader:<11} {len(rs):>4} {s['open'] * 1e3:8.1f} {s['cold'] * 1e3:9.1f} "
              f"{s['cold95'] * 1e3:9.1f} {s['warm'] * 1e3:9.1f} {s['warm95'] * 1e3:9.1f} "
              f"{s['mpx']:9.2f} {fetches:>7}  {chunk_s}")
    return stats


def paired(results: list[dict], other: str, key: str, q: float) -> list[float]:
    """Per run: ours' statistic over the other reader's in the same run."""
    runs: dict[int, dict[str, dict]] = {}
    for r in results:
        runs.setdefault(r["run"], {})[r["reader"]] = r
    out = []
    for pair in runs.values():
        if "ours" in pair and other in pair:
            a, b = _q(pair["ours"][key]["lat"], q), _q(pair[other][key]["lat"], q)
            if b > 0:
                out.append(a / b)
    return out


def ratios(results: list[dict], stats: dict[str, dict[str, float]]) -> list[str]:
    """Print ours / each other reader (the median over runs of each run's ratio, [min-max]);
    returns the missed targets."""
    missed = []
    if "ours" not in stats:
        return missed
    print()
    for other in ("napari-wsi", "in-RAM", "bare"):
        if other not in stats:
            if other == "napari-wsi":
                print("ours / napari-wsi: napari-wsi (or openslide) is not importable here")
            continue
        cells = {}
        for key, q in (("cold", 50), ("cold95", 95), ("warm", 50), ("warm95", 95)):
            per_run = paired(results, other, key[:4], q)
            cells[key] = (statistics.median(per_run), min(per_run), max(per_run))
        cold, warm = cells["cold"][0], cells["warm"][0]
        fmt = {k: f"{m:.2f}x [{lo:.2f}-{hi:.2f}]" for k, (m, lo, hi) in cells.items()}
        line = (f"ours / {other}: cold median {fmt['cold']}, p95 {fmt['cold95']}; "
                f"warm median {fmt['warm']}, p95 {fmt['warm95']}")
        if other == "napari-wsi":
            met_cold, met_warm = cold <= TARGET, warm <= TARGET
            line += (f"  (targets <= {TARGET}: cold {'met' if met_cold else 'not met'}, "
                     f"warm {'met' if met_warm else 'not met'})")
            missed += [f"{k} {v:.2f} > {TARGET}" for k, v, m in
                       (("cold", cold, met_cold), ("warm", warm, met_warm)) if not m]
        print(line)
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=16, help="mosaic side in BCI patches")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=40, help="viewports per pass")
    parser.add_argument("--seed", type=int, default=20240)
    parser.add_argument("--threads", type=int, default=2, help="dask threads")
    parser.add_argument("--readers", default=",".join(READERS))
    parser.add_argument("--no-napari-cache", action="store_true",
                        help="napari's fetch path without its opportunistic dask cache")
    parser.add_argument("--workdir", help="keep the mosaic here (default: a temporary folder)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the readers in this process (faster, less isolated)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: a 4096 px mosaic, 8 views, 1 run, in process")
    parser.add_argument("--chunk", type=int, default=0,
                        help="diagnostic: dask blocks of about this many px for ours and "
                        "in-RAM (default: as the reader makes them)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--slide", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        res = worker(args.worker, Path(args.slide), args.n, args.seed, args.threads,
                     not args.no_napari_cache, args.chunk)
        print("RESULT " + json.dumps(res))
        return 0
    if args.quick:
        args.scale, args.n, args.runs, args.in_process = 4, 8, 1, True
    from bench_read import describe_machine

    print(describe_machine())
    readers = [r for r in args.readers.split(",") if r]
    if "napari-wsi" in readers and not _wsi_available():
        print("napari-wsi or openslide is not importable: napari-wsi left out "
              "(pip install 'napari-wsi==1.3.0' beside the venv, see benchmarks/README.md)")
        readers.remove("napari-wsi")
    with tempfile.TemporaryDirectory(prefix="napari-her2-view-") as tmp:
        folder = Path(args.workdir) if args.workdir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path, source = fixture(folder, args.scale)
        print(f"slide: mosaic of {source}, {path.name}; {args.n} views on a "
              f"{CANVAS[1]}x{CANVAS[0]} canvas, seed {args.seed}, {args.threads} dask threads, "
              f"napari's dask cache {'off' if args.no_napari_cache else 'on'}; "
              f"{args.runs} run(s), each reader in a fresh "
              f"{'state' if args.in_process else 'process'}; times in ms")
        results = []
        for run in range(args.runs):
            order = readers[run % len(readers):] + readers[: run % len(readers)]
            for reader in order:
                res = run_one(args, reader, path, run)
                if res is not None:
                    results.append(res)
        stats = summarize(results)
        missed = ratios(results, stats)
    print("targets: " + ("met" if not missed else "not met: " + "; ".join(missed))
          if "napari-wsi" in stats else "targets: no napari-wsi to compare with")
    return 0


def _wsi_available() -> bool:
    try:
        import napari_wsi  # noqa: F401
        import openslide  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
