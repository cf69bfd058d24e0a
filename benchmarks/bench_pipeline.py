"""End-to-end scoring speed against the model alone and against the usual per-tile script.

Prints, measured in the same run on the same slide and model:
  pure model   tiles/s of predictor.predict on tiles already in memory (same batch size)
  napari-her2  tiles/s of score_slide (tissue, grid, threaded reads, batches, results)
  usual script tiles/s of openslide read_region per tile + one forward per tile
and the ratios pipeline / pure (target >= 0.85) and pipeline / usual (target >= 3).

    python benchmarks/bench_pipeline.py [--slide PATH] [--model dab-membrane] [--batch 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_her2 import open_slide, score_slide
from napari_her2._sample_data import ihc_mosaic
from napari_her2.inference import read_tile
from napari_her2.params import ScoringParams
from napari_her2.pipeline import as_predictor, prepare
from napari_her2.slide import write_pyramid_tiff


def build_slide(folder: Path, rows: int, cols: int) -> Path:
    path = folder / f"bench-{rows}x{cols}.tif"
    if not path.exists():
        write_pyramid_tiff(path, ihc_mosaic(rows=rows, cols=cols, gap=64), 0.5, tile=256)
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


def pure_model(predictor, tiles: np.ndarray, batch: int) -> float:
    predictor.predict(tiles[:batch])  # warm-up
    t0 = time.perf_counter()
    for s in range(0, len(tiles), batch):
        predictor.predict(tiles[s : s + batch])
    return len(tiles) / (time.perf_counter() - t0)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path)
    ap.add_argument("--model", default="dab-membrane",
                    help="dab-membrane, a checkpoint, or an architecture "
                    f"({', '.join(TIMING_ARCHS)}) timed with random weights")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mosaic", type=int, default=10, help="synthetic slide: n x n IHC pieces")
    ap.add_argument("--usual-tiles", type=int, default=200, help="tiles timed for the usual script")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.slide or build_slide(Path(tmp), args.mosaic, args.mosaic)
        model = args.model
        if model in TIMING_ARCHS:
            model = str(random_checkpoint(model, Path(tmp)))
        predictor = as_predictor(model, "cpu")
        params = ScoringParams().with_overrides(batch_size=args.batch)
        slide = open_slide(path)
        prep = prepare(slide, predictor, params=params)  # the grid the model card decides
        grid, predictor = prep.grid, prep.predictor
        rows, cols = grid.tissue_tiles()
        tiles = np.stack([read_tile(slide, grid, int(r), int(c)) for r, c in zip(rows, cols)])

        pure = pure_model(predictor, tiles, args.batch)
        t0 = time.perf_counter()
        report = score_slide(path, predictor, params=params)
        wall = time.perf_counter() - t0
        ours = len(report.results) / wall
        usual = usual_script(path, predictor, grid, slide, args.usual_tiles)

    h, w = slide.dimensions
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    print(f"slide: {Path(path).name} {w}x{h} px; model {predictor.name}; batch {args.batch}; "
          f"{len(report.results)} tissue tiles of {grid.tile_size}px at {grid.target_mpp} µm/px")
    print(f"{'pure model':<14}{pure:10.1f} tiles/s")
    print(f"{'napari-her2':<14}{ours:10.1f} tiles/s   (timings {report.timings.to_dict()})")
    if usual is not None:
        print(f"{'usual script':<14}{usual:10.1f} tiles/s   (openslide read_region + 1 tile/forward)")
    print(f"ratio napari-her2 / pure model   = {ours / pure:.2f}  (target >= 0.85)")
    if usual is not None:
        print(f"ratio napari-her2 / usual script = {ours / usual:.2f}  (target >= 3)")


if __name__ == "__main__":
    main()
