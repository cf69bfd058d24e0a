"""Training throughput: the full her2-train loop against a bare forward+backward loop.

Both loops train the same architecture (fresh copies with the same initial weights), with
the same optimiser, batch size, tile size and number of torch threads, in the same process:

* full: ``her2_train.loop.fit`` on uint8 tiles: class-balanced sampling, augmentation
  (crop/flip/rotate, HED and HSV jitter, blur/noise) and normalisation in the background
  thread, optimiser and scheduler steps, loss bookkeeping;
* bare: forward + cross-entropy + backward + optimiser step on batches already made as
  normalised float tensors (what the model alone costs).

Repeats alternate the two (machine load drifts hit both); medians are reported. The target
is full >= 0.8 x bare: data loading and augmentation keep up with the model. A bare loop
with all cores is printed for reference.

    python benchmarks/bench_train.py [--arch her2-resnet] [--size 64] [--batch 64]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from her2_train.augment import AugmentParams
from her2_train.config import preset
from her2_train.loop import channel_stats, fit, make_optimizer
from her2_train.threads import default_threads, torch_threads

from napari_her2.models import get_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="her2-resnet")
    p.add_argument("--size", type=int, default=64, help="tile side in pixels")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="optimiser steps per timing")
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args(argv)


def make_tiles(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """n IHC-looking uint8 tiles (random crops of scikit-image's IHC image), 4 labels."""
    from skimage.data import immunohistochemistry

    img = immunohistochemistry()
    rng = np.random.default_rng(0)
    ys = rng.integers(0, img.shape[0] - size, n)
    xs = rng.integers(0, img.shape[1] - size, n)
    tiles = np.stack([img[y:y + size, x:x + size] for y, x in zip(ys, xs, strict=True)])
    return tiles, rng.integers(0, 4, n).astype(np.int64)


def time_full(model, tiles, labels, recipe, stats) -> float:
    t0 = time.perf_counter()
    fit(model, (tiles, labels), None, recipe=recipe, aug=AugmentParams(), epochs=1,
        stats=stats, progress=False)
    return time.perf_counter() - t0


def time_bare(model, batches, recipe, threads: int) -> float:
    model.train()
    opt = make_optimizer(model, recipe)
    with torch_threads(threads):
        t0 = time.perf_counter()
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    recipe = preset("default", batch_size=args.batch)
    n = args.steps * args.batch
    tiles, labels = make_tiles(n, args.size)
    stats = channel_stats(tiles)
    torch.manual_seed(0)
    base = get_model(args.arch, num_classes=4)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch, 3, args.size, args.size, generator=gen),
                torch.randint(0, 4, (args.batch,), generator=gen)) for _ in range(args.steps)]
    threads = default_threads()
    # warm-up (lazy imports, allocator)
    time_full(copy.deepcopy(base), tiles[:args.batch * 2], labels[:args.batch * 2], recipe, stats)
    time_bare(copy.deepcopy(base), batches[:2], recipe, threads)
    full, bare, bare_all = [], [], []
    for _ in range(args.repeats):
        full.append(time_full(copy.deepcopy(base), tiles, labels, recipe, stats))
        bare.append(time_bare(copy.deepcopy(base), batches, recipe, threads))
        bare_all.append(time_bare(copy.deepcopy(base), batches, recipe, os.cpu_count() or 1))
    rate = {k: n / statistics.median(v) for k, v in
            (("full", full), ("bare", bare), ("bare_all", bare_all))}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {threads} torch thread(s) + 1 batch thread")
    print(f"{args.arch}, {args.size} px, batch {args.batch}, {args.steps} steps x "
          f"{args.repeats} repeats (median)")
    print(f"  her2-train loop (sampling + augmentation + step): {rate['full']:8.1f} tiles/s")
    print(f"  bare forward+backward+step, same threads:         {rate['bare']:8.1f} tiles/s")
    print(f"  bare forward+backward+step, all {os.cpu_count()} cores:          "
          f"{rate['bare_all']:8.1f} tiles/s")
    print(f"  ratio full / bare: {rate['full'] / rate['bare']:.2f}x (target >= 0.8x)")

    return 0


if __name__ == "__main__":
    sys.exit(main())
