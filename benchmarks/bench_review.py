"""Review queue on a 100,000-tile slide: how long the UI thread is busy per step.

Measures, in one run: ranking the queue (:func:`napari_her2.scoring.review.rank_tiles`), filling the
list view, and rescoring after one keyboard correction (the guideline rule over the edited
label image), each against the 100 ms stall budget of the design brief; prints the ratios.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_review.py [--tiles 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

STALL_BUDGET_S = 0.100
N_TILES = 100_000


def _results(n: int):
    from napari_her2.tiles.results import TileResults

    side = int(np.ceil(np.sqrt(n)))
    rng = np.random.default_rng(0)
    res = TileResults(("0", "1+", "2+", "3+"), (), (side, side), (0.0, 0.0), (256.0, 256.0))
    idx = np.arange(n)
    res.extend(idx // side, idx % side, rng.dirichlet(np.ones(4) * 0.5, size=n),
               np.zeros((n, 0)), np.ones(n, bool))
    return res


def _best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=N_TILES, help="tiles of the synthetic slide")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qtpy.QtWidgets import QApplication

    from napari_her2._qt.review import ReviewList
    from napari_her2.scoring import call_from_rule, call_slide, score_labels
    from napari_her2.scoring.review import rank_tiles

    app = QApplication.instance() or QApplication([])
    res = _results(args.tiles)
    call = call_slide(res)
    queue = rank_tiles(res, call)
    view = ReviewList()
    labels = res.label_image()
    labels[0, 0] = 4

    steps = {
        f"rank {args.tiles:,} tiles": _best(lambda: rank_tiles(res, call)),
        "fill list view": _best(lambda: view.set_queue(queue)),
        "rescore one edit": _best(lambda: call_from_rule(score_labels(labels)), repeat=3),
    }
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.tiles} tiles, queue of {len(queue)}")
    for name, seconds in steps.items():
        print(f"{name:>18}: {1000 * seconds:7.1f} ms  ratio to the 100 ms budget "
              f"{seconds / STALL_BUDGET_S:5.2f}")
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
