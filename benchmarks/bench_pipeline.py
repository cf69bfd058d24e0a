"""End-to-end scoring speed against the model alone and against the usual per-tile script.

Prints, measured in the same run on the same slide and model:
  pure model   tiles/s of predictor.predict on tiles already in memory (same batch size; for
               dab-cells each tile with the context the pipeline reads around it)
  napari-her2  tiles/s of score_slide (tissue, grid, threaded reads, batches, results)
  usual script tiles/s of openslide read_region per tile + one forward per tile
  (dab-cells) its time per tile split into read, waiting and scorer, and the scorer's own
               work into measuring cells and classifying tiles from them
and the ratios pipeline / pure (target >= 0.85) and pipeline / usual (target >= 3).

    python benchmarks/bench_pipeline.py [--slide PATH [--mpp UM]] [--model dab-membrane]
        [--batch 32] [--workers N] [--slide-mpp UM] [--rounds 3] [--device cuda]

The pure model and the pipeline are timed back to back in each round and the ratio printed
is the median of the rounds' ratios, so that load from other jobs that comes and goes during
the run moves both sides of a ratio alike.
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
import torch

from napari_her2 import open_slide, score_slide
from napari_her2._sample_data import ihc_mosaic
from napari_her2.params import ScoringParams
from napari_her2.run.inference import context_margin, read_tiles
from napari_her2.run.pipeline import as_predictor, prepare
from napari_her2.slide import write_pyramid_tiff


def build_slide(folder: Path, rows: int, cols: int, mpp: float = 0.5) -> Path:
    """A synthetic IHC pyramid (2x levels) at ``mpp`` µm/px: at 0.5 the grid of a 0.5 µm/px
    model reads level 0 as it is; at other resolutions every tile is resized."""
    path = folder / f"bench-{rows}x{cols}-{mpp:g}.tif"
    if not path.exists():
        write_pyramid_tiff(path, ihc_mosaic(rows=rows, cols=cols, gap=64), mpp, tile=256)
    return path


#: architectures the benchmark can time with random weights: input size, classes
TIMING_ARCHS = {
    "her2-resnet": (64, ("0", "1+", "2+", "3+")),
    "resnet18": (224, ("0", "1+", "2+", "3+")),
    "repvgg-gct": (256, ("0", "1+", "2+", "3+", "normal", "noise")),
    "repvgg-se": (256, ("0", "1+", "2+", "3+", "normal", "noise")),
}


def random_checkpoint(arch: str, folder: Path) -> Path:
    """A checkpoint with random weights: the speed of a model does not depend on them."""
    from napari_her2.models import ModelCard, get_model, save_checkpoint

    size, classes = TIMING_ARCHS[arch]
    model = get_model(arch, num_classes=len(classes))
    card = ModelCard(architecture=arch, classes=classes, input_size=size, target_mpp=0.5,
                     name=f"{arch}-random", description="random weights, for timing only")
    path = folder / f"{arch}-random.safetensors"
    save_checkpoint(path, model, card)
    return path


def pure_model(predictor, tiles: np.ndarray, batch: int, context: int = 0) -> tuple[int, float]:
    """(tiles, seconds) of predictor.predict over tiles already in memory (each with
    ``context`` px of the slide around it, for a predictor that asks for it)."""
    t0 = time.perf_counter()
    for s in range(0, len(tiles), batch):
        if context:
            predictor.predict(tiles[s : s + batch], context=context)
        else:
            predictor.predict(tiles[s : s + batch])
    return len(tiles), time.perf_counter() - t0


def bare_forward(predictor, tiles: np.ndarray, batch: int) -> float | None:
    """Tiles/s of the network's forward alone, in its fastest CPU layout (channels_last for a
    CNN, as the predictor runs it), on batches already preprocessed into tensors: the limit
    no pipeline can pass. None for a scorer without a network."""
    model = getattr(predictor, "model", None)
    if model is None:
        return None
    from napari_her2.models.preprocess import preprocess

    card = predictor.card
    layout = getattr(predictor, "_channels_last", False)
    batches = [preprocess(tiles[s : s + batch], predictor.input_size, card.mean, card.std,
                          predictor.device, layout) for s in range(0, len(tiles), batch)]
    with torch.inference_mode():
        model(batches[0])  # warm-up
        t0 = time.perf_counter()
        for x in batches:
            model(x)
    return len(tiles) / (time.perf_counter() - t0)


def cell_shares(predictor, tiles: np.ndarray, batch: int, context: int = 0
                ) -> dict[str, float] | None:
    """Seconds per tile of the cell scorer's two steps on tiles in memory, one thread:
    ``measure`` (deconvolution, nuclei, cells, rings: ``measure_cells``) and ``classify``
    (tile counts and class probabilities from the cells). None for another scorer."""
    if predictor.name != "dab-cells":
        return None
    from napari_her2.ihc.cell_scorer import tile_probabilities
    from napari_her2.ihc.cells import cell_counts, measure_cells
    from napari_her2.ihc.deconvolution import stain_matrix

    matrix = stain_matrix(predictor.haematoxylin, predictor.dab)
    measure = classify = 0.0
    for s in range(0, len(tiles), batch):
        part = tiles[s : s + batch]
        t0 = time.perf_counter()
        cells = measure_cells(part, predictor.params, matrix, predictor.background, context)
        t1 = time.perf_counter()
        tile_probabilities(cell_counts(cells, len(part)))
        measure, classify = measure + t1 - t0, classify + time.perf_counter() - t1
    return {"measure": measure / len(tiles), "classify": classify / len(tiles)}


def usual_script(path: Path, predictor, grid, slide, limit: int) -> float | None:
    try:
        import openslide
    except ImportError:
        return None
    try:
        osr = openslide.OpenSlide(str(path))
    except openslide.OpenSlideError:
        return None
    rows, cols = grid.tissue_tiles()
    rows, cols = rows[:limit], cols[:limit]
    size = grid.tile_size
    dy, dx = grid.tile_size0
    t0 = time.perf_counter()
    for r, c in zip(rows, cols):
        region = osr.read_region((int(c * dx), int(r * dy)), 0, (int(dx), int(dy)))
        tile = np.asarray(region.convert("RGB").resize((size, size)))
        predictor.predict(tile[None])
    return len(rows) / (time.perf_counter() - t0)


def with_cpu(run) -> tuple[float, float]:
    """(tiles/s, CPU seconds of this process per tile) of ``run() -> (tiles, seconds)``."""
    c0 = time.process_time()
    n, seconds = run()
    return n / seconds, (time.process_time() - c0) / n


def timed_rounds(pure, pipeline, rounds: int) -> list[tuple[tuple[float, float], ...]]:
    """((pure tiles/s, CPU s/tile), (pipeline tiles/s, CPU s/tile)) of ``rounds`` rounds,
    the two measured back to back in each round: on a shared machine the load drifts, and a
    ratio of two runs minutes apart measures the drift as much as the code. The CPU time
    per tile moves less with other jobs than the wall-clock time does."""
    return [(with_cpu(pure), with_cpu(pipeline)) for _ in range(rounds)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path)
    ap.add_argument("--mpp", type=float, help="µm/px of --slide when its file gives none")
    ap.add_argument("--model", default="dab-membrane",
                    help="dab-membrane, a checkpoint, or an architecture "
                    f"({', '.join(TIMING_ARCHS)}) timed with random weights")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="reading threads (default: "
                    "ScoringParams')")
    ap.add_argument("--mosaic", type=int, default=10, help="synthetic slide: n x n IHC pieces")
    ap.add_argument("--slide-mpp", type=float, default=0.5,
                    help="synthetic slide's µm/px (not 0.5: every tile is resized)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="pure model and pipeline timed back to back this many times")
    ap.add_argument("--usual-tiles", type=int, default=200, help="tiles timed for the usual script")
    ap.add_argument("--device", default="cpu",
                    help="where the model runs: cpu, cuda, mps (the pure model runs there too)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.slide or build_slide(Path(tmp), args.mosaic, args.mosaic, args.slide_mpp)
        model = args.model
        if model in TIMING_ARCHS:
            model = str(random_checkpoint(model, Path(tmp)))
        predictor = as_predictor(model, args.device)
        overrides = {"batch_size": args.batch, "device": args.device}
        if args.workers is not None:
            overrides["workers"] = args.workers
        params = ScoringParams().with_overrides(**overrides)
        slide = open_slide(path, mpp=args.mpp)
        prep = prepare(slide, predictor, params=params)  # the grid the model card decides
        grid, predictor = prep.grid, prep.predictor
        rows, cols = grid.tissue_tiles()
        margin = context_margin(predictor, grid)  # the pure model gets what the runner reads
        context = margin.tile
        tiles = read_tiles(slide, grid, rows, cols, margin)
        bare_tiles = tiles[:, context : tiles.shape[1] - context, context : tiles.shape[2] - context]
        reports = []

        def pipeline() -> tuple[int, float]:
            t0 = time.perf_counter()
            reports.append(score_slide(path, predictor, mpp=args.mpp, params=params))
            return len(reports[-1].results), time.perf_counter() - t0

        pure_model(predictor, tiles[: args.batch], args.batch, context)  # warm-up
        rounds, bare = [], []
        for _ in range(args.rounds):  # each round: the pure model, the pipeline, the network
            rounds += timed_rounds(lambda: pure_model(predictor, tiles, args.batch, context),
                                   pipeline, 1)
            bare.append(bare_forward(predictor, bare_tiles, args.batch))
        usual = usual_script(path, predictor, grid, slide, args.usual_tiles)
        shares = cell_shares(predictor, tiles, args.batch, context)
    report_figures(args, slide, predictor, grid, rounds, reports[-1], usual, bare, shares)
    return 0


def report_figures(args, slide, predictor, grid, rounds, report, usual, bare=(),
                   shares=None) -> None:
    h, w = slide.dimensions
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    print(f"slide: {Path(slide.path).name} {w}x{h} px; model {predictor.name}; batch {args.batch};"
          f" {len(report.results)} tissue tiles of {grid.tile_size}px at {grid.target_mpp} µm/px"
          f" (read {grid.read_size[1]}x{grid.read_size[0]} px at level {grid.level})")
    for i, ((pure, pure_cpu), (ours, ours_cpu)) in enumerate(rounds):
        print(f"round {i + 1}: pure model {pure:8.1f} tiles/s ({pure_cpu * 1e3:.2f} CPU ms/tile), "
              f"napari-her2 {ours:8.1f} tiles/s ({ours_cpu * 1e3:.2f} CPU ms/tile), "
              f"ratio {ours / pure:.2f}")
    pure = float(np.median([p[0] for p, _ in rounds]))
    ours = float(np.median([o[0] for _, o in rounds]))
    ratio = float(np.median([o[0] / p[0] for p, o in rounds]))
    cpu_ratio = float(np.median([p[1] / o[1] for p, o in rounds]))
    print(f"{'pure model':<14}{pure:10.1f} tiles/s   (median of {len(rounds)} rounds)")
    print(f"{'napari-her2':<14}{ours:10.1f} tiles/s   (last run's timings {report.timings.to_dict()})")
    if usual is not None:
        print(f"{'usual script':<14}{usual:10.1f} tiles/s   (openslide read_region + 1 tile/forward"
              + (", tiles without context)" if getattr(predictor, "context_px", 0) else ")"))
    print(f"ratio napari-her2 / pure model   = {ratio:.2f}  (median of the rounds' ratios; "
          "target >= 0.85)")
    print(f"CPU time per tile, pure / napari-her2 = {cpu_ratio:.2f}  (median; what the ratio "
          "would be on idle cores that both keep busy)")
    if usual is not None:
        print(f"ratio napari-her2 / usual script = {ours / usual:.2f}  (target >= 3)")
    if bare and bare[0] is not None:
        print(f"{'bare forward':<14}{float(np.median(bare)):10.1f} tiles/s   (the network alone, "
              "its fastest layout, preprocessed batches; median of the rounds)")
        to_bare = float(np.median([o[0] / b for (_, o), b in zip(rounds, bare, strict=True)]))
        print(f"ratio napari-her2 / bare forward = {to_bare:.2f}  (median of the rounds' ratios; "
              "target >= 0.85)")
    if shares is not None:
        t = report.timings
        n = max(len(report.results), 1)
        wall = {"read (threads, overlapped)": t.read / n, "waiting for reads": t.wait / n,
                "scorer": t.infer / n}
        print("cell scorer, seconds per tile: " + ", ".join(
            f"{k} {v * 1e3:.2f} ms" for k, v in wall.items()))
        step = shares["measure"] + shares["classify"]
        print(f"  of the scorer's own work (one thread, tiles in memory): measure "
              f"{shares['measure'] * 1e3:.2f} ms ({100 * shares['measure'] / step:.1f}%), "
              f"classify {shares['classify'] * 1e3:.3f} ms "
              f"({100 * shares['classify'] / step:.1f}%)")
    # the target is stated in pixels at 0.5 µm/px: a tile's area in those pixels
    tile_mpx = (grid.tile_size * grid.target_mpp / 0.5) ** 2 / 1e6
    print(f"tissue throughput: napari-her2 {ours * tile_mpx:.2f} Mpx/s, pure model "
          f"{pure * tile_mpx:.2f} Mpx/s (tiles of {grid.tile_size} px at {grid.target_mpp} "
          "µm/px, counted in pixels at 0.5 µm/px; cell scorer target >= 3 Mpx/s)")


if __name__ == "__main__":
    sys.exit(main())
