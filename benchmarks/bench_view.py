"""Viewing: time to fetch what napari shows after a pan or zoom, napari-her2 against napari-wsi.

Builds (in a temporary folder, or in --workdir where it is kept and reused) an Aperio-like
pyramidal SVS of --size x --size px: 256 px JPEG tiles, levels down by 2 until under 1024 px,
a stripped thumbnail as the second page (the layout openslide, tifffile and both readers
expect). Most of the slide is white glass; a few blobs of tissue are tiles cut from
``skimage.data.immunohistochemistry()`` (rotated and flipped), each JPEG-compressed once and
written as pre-compressed bytes, so building a 100,000 px slide takes seconds, not hours.

Then it simulates a viewer: a 1920 x 1080 canvas, the home view (whole slide) and a fixed-seed
sequence of steps:
  cold   a jump to a new area (mostly on tissue) at a random zoom
  pan    a shift by 20-60 % of the view: the new view partly overlaps the previous one
  zoom   in or out by 2^0.5 .. 2^1.5 about the view's centre
For each view, napari's own ``compute_multiscale_level_and_corners`` picks the level and the
region, and the time is that of ``np.asarray(levels[level][y0:y1, x0:x1])`` under napari's
dask settings (task fusion off; napari's opportunistic dask cache off unless --napari-cache,
so that the readers, not napari, are measured), on the arrays each reader gives napari:
  ours        napari_her2._reader.read_slide_layers (dask blocks over our chunked reader)
  napari-wsi  its openslide reader (the one it registers for .svs): a zarr store per level
Each reader opens the file once, fresh (one-time process costs, such as codec imports, are
paid first on a throw-away instance). The file is read once before timing so that the page
cache holds it, and the readers alternate step by step (which goes first swaps every step).

Prints the opening (home) view's time, then median and 95th percentile of the steps per reader
and per step kind, the ratios ours / theirs and whether the target (ours <= theirs, median and
p95) is met.

    .venv/bin/python benchmarks/bench_view.py [--size 100000] [--steps 200] [--seed 0]
        [--canvas 1920x1080] [--workdir DIR] [--napari-cache]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_read import describe_machine, warm_page_cache  # noqa: E402

TILE = 256
MIN_LEVEL_SIDE = 1024
JPEG_QUALITY = 80
MPP = 0.25
CANVAS = (1080, 1920)  # napari's shape threshold: the canvas in screen pixels (rows, columns)
STEP_KINDS = ("cold", "pan", "zoom")
STEP_WEIGHTS = (0.25, 0.45, 0.30)
APERIO_HEAD = "Aperio Image Library v12.0.15\r\n"


# --------------------------------------------------------------------------- the slide


def level_shapes(size: int) -> list[tuple[int, int]]:
    """Square levels halving from ``size`` until one side is under MIN_LEVEL_SIDE."""
    shapes = [(size, size)]
    while shapes[-1][0] >= MIN_LEVEL_SIDE:
        shapes.append((shapes[-1][0] // 2, shapes[-1][1] // 2))
    return shapes


def encode_tile(tile: np.ndarray) -> bytes:
    """A 256 px RGB tile as tifffile writes JPEG tiles (YCbCr, 2x2 chroma subsampling)."""
    import imagecodecs

    return imagecodecs.jpeg8_encode(np.ascontiguousarray(tile), level=JPEG_QUALITY,
                                    colorspace="RGB", outcolorspace="YCBCR", subsampling=(2, 2))


def tissue_pool() -> list[bytes]:
    """Distinct tissue tiles, each encoded once: 9 crops of the IHC image x 8 orientations."""
    from skimage.data import immunohistochemistry

    base = immunohistochemistry()
    step = (base.shape[0] - TILE) // 2
    pool = []
    for y in range(0, base.shape[0] - TILE + 1, step):
        for x in range(0, base.shape[1] - TILE + 1, step):
            crop = base[y : y + TILE, x : x + TILE]
            for k in range(8):
                pool.append(encode_tile(np.rot90(crop, k % 4)[:, :: -1 if k >= 4 else 1]))
    return pool


def tissue_mask(grid: int, rng: np.random.Generator) -> np.ndarray:
    """Level-0 tile grid (grid x grid) with a few elliptical pieces of tissue, ~20 % cover."""
    yy, xx = np.mgrid[0:grid, 0:grid] / grid
    mask = np.zeros((grid, grid), bool)
    for _ in range(5):
        cy, cx = rng.uniform(0.2, 0.8, 2)
        ry, rx = rng.uniform(0.08, 0.16, 2)
        mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return mask


def level_mask(mask: np.ndarray, factor: int, grid: tuple[int, int]) -> np.ndarray:
    """Tiles of a level downsampled by ``factor`` that hold any tissue (max pooling)."""
    padded = np.zeros((grid[0] * factor, grid[1] * factor), bool)
    part = mask[: padded.shape[0], : padded.shape[1]]
    padded[: part.shape[0], : part.shape[1]] = part
    return padded.reshape(grid[0], factor, grid[1], factor).any(axis=(1, 3))


def level_tiles(tissue: np.ndarray, level: int, pool: list[bytes], white: bytes) -> Iterator[bytes]:
    """Encoded tiles of one level in row order: a pool tile where tissue, else white."""
    for iy, row in enumerate(tissue):
        for ix, on in enumerate(row):
            yield pool[(iy * 31 + ix * 17 + level * 7) % len(pool)] if on else white


def aperio_description(size: int, shape: tuple[int, int] | None) -> str:
    """Aperio ImageDescription of the base level (shape None) or of a reduced image."""
    tail = f"|AppMag = 40|MPP = {MPP:.4f}|Filename = bench-view"
    if shape is None:
        return (f"{APERIO_HEAD}{size}x{size} [0,0 {size}x{size}] ({TILE}x{TILE}) "
                f"JPEG/RGB Q={JPEG_QUALITY}{tail}")
    return f"{APERIO_HEAD}{size}x{size} -> {shape[1]}x{shape[0]} - {tail}"


@dataclass(frozen=True)
class BuiltSlide:
    """The benchmark slide and what describes it."""

    path: Path
    shapes: list[tuple[int, int]]
    tissue_fraction: float
    tissue_centres: np.ndarray  # level-0 pixel centres of tissue tiles (for jumps)
    seconds: float


def build_slide(folder: Path, size: int, seed: int) -> BuiltSlide:
    """Write (or reuse) the Aperio-like slide of ``size`` px in ``folder``."""
    import tifffile

    t0 = time.perf_counter()
    grid = math.ceil(size / TILE)
    mask = tissue_mask(grid, np.random.default_rng(seed))
    shapes = level_shapes(size)
    path = folder / f"bench-view-{size}-s{seed}.svs"
    if not path.exists():
        pool, white = tissue_pool(), encode_tile(np.full((TILE, TILE, 3), 255, np.uint8))
        tmp = path.with_suffix(".tmp")
        with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
            for level, shape in enumerate(shapes):
                lgrid = (math.ceil(shape[0] / TILE), math.ceil(shape[1] / TILE))
                tiles = level_tiles(level_mask(mask, 2**level, lgrid), level, pool, white)
                tw.write(tiles, shape=(*shape, 3), dtype=np.uint8, tile=(TILE, TILE),
                         compression="jpeg", photometric="rgb", subsampling=(2, 2),
                         description=aperio_description(size, None if level == 0 else shape),
                         metadata=None)
                if level == 0:  # Aperio's second page: a stripped thumbnail
                    thumb = np.where(mask[..., None], np.uint8(170), np.uint8(255))
                    tw.write(np.repeat(thumb, 3, axis=2), photometric="rgb", metadata=None,
                             description=aperio_description(size, mask.shape))
        tmp.rename(path)
    centres = (np.argwhere(mask) + 0.5) * TILE
    return BuiltSlide(path, shapes, float(mask.mean()), centres, time.perf_counter() - t0)


# --------------------------------------------------------------------------- the viewer


@dataclass(frozen=True)
class View:
    """What the canvas shows: centre in level-0 pixels, zoom in screen px per level-0 px."""

    cy: float
    cx: float
    zoom: float

    def corners(self, size: int, canvas: tuple[int, int]) -> np.ndarray:
        """napari's corner pixels: the view's extent in level-0 pixels, clipped to the data."""
        hy, hx = canvas[0] / (2 * self.zoom), canvas[1] / (2 * self.zoom)
        box = np.array([[self.cy - hy, self.cx - hx], [self.cy + hy, self.cx + hx]])
        return np.clip(box, 0, size - 1)


def view_steps(
    slide: BuiltSlide, steps: int, rng: np.random.Generator, canvas: tuple[int, int]
) -> list[tuple[str, View]]:
    """The home view, then ``steps`` cold jumps, pans and zooms (fixed by the seed)."""
    size = slide.shapes[0][0]
    zmin, zmax = min(canvas) / size, 1.0
    view = View(size / 2, size / 2, zmin)
    out = [("home", view)]
    for _ in range(steps):
        kind = rng.choice(STEP_KINDS, p=STEP_WEIGHTS)
        if kind == "cold":
            centre = (slide.tissue_centres[rng.integers(len(slide.tissue_centres))]
                      if rng.random() < 0.8 else rng.uniform(0, size, 2))
            view = View(*centre, math.exp(rng.uniform(math.log(zmin), math.log(zmax))))
        elif kind == "pan":
            angle, frac = rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 0.6)
            dy = frac * canvas[0] / view.zoom * math.sin(angle)
            dx = frac * canvas[1] / view.zoom * math.cos(angle)
            cy, cx = np.clip((view.cy + dy, view.cx + dx), 0, size)
            view = View(float(cy), float(cx), view.zoom)
        else:
            factor = 2 ** (rng.uniform(0.5, 1.5) * rng.choice((-1, 1)))
            view = View(view.cy, view.cx, float(np.clip(view.zoom * factor, zmin, zmax)))
        out.append((str(kind), view))
    return out


@dataclass(frozen=True)
class Request:
    """One fetch: the step's kind, the level napari shows and the region (end exclusive)."""

    kind: str
    level: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def pixels(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)


def plan_requests(
    views: list[tuple[str, View]], shapes: list[tuple[int, int]], canvas: tuple[int, int]
) -> list[Request]:
    """The level and region napari fetches for each view (napari's own level choice)."""
    from napari.layers.utils.layer_utils import compute_multiscale_level_and_corners

    base = np.array(shapes[0], float)
    downsample = np.array([base / np.array(s, float) for s in shapes])
    size = shapes[0][0]
    requests = []
    for kind, view in views:
        level, corners = compute_multiscale_level_and_corners(
            view.corners(size, canvas), np.array(canvas), downsample)
        (y0, x0), (y1, x1) = corners
        h, w = shapes[level]
        requests.append(Request(kind, int(level), int(y0), min(int(y1) + 1, h),
                                int(x0), min(int(x1) + 1, w)))
    return requests


# --------------------------------------------------------------------------- the readers


def open_ours(path: Path) -> list:
    """The levels napari-her2's reader hands napari."""
    from napari_her2._reader import read_slide_layers

    return list(read_slide_layers(str(path))[0][0])


def open_napari_wsi(path: Path) -> list:
    """The levels napari-wsi's openslide reader (its reader for .svs) hands napari."""
    from napari_wsi.reader import wsi_reader_openslide

    reader = wsi_reader_openslide(str(path))
    return list(reader(str(path))[0][0])


READERS: dict[str, Callable[[Path], list]] = {"ours": open_ours, "napari-wsi": open_napari_wsi}


def napari_indexer(levels: list, cache: bool) -> Callable[[], AbstractContextManager]:
    """The context napari slices dask data in (task fusion off; its dask cache if ``cache``)."""
    from napari.utils._dask_utils import configure_dask

    return configure_dask(levels, cache=cache)


def fetch(levels: list, req: Request, indexer: Callable[[], AbstractContextManager]) -> float:
    """Seconds to materialise one region as napari does."""
    with indexer():
        t0 = time.perf_counter()
        np.asarray(levels[req.level][req.y0 : req.y1, req.x0 : req.x1])
        return time.perf_counter() - t0


def check_same_levels(opened: dict[str, list]) -> list[tuple[int, int]]:
    """Level shapes (rows, columns), the same for every reader, else SystemExit."""
    shapes = {name: [tuple(int(n) for n in a.shape[:2]) for a in levels]
              for name, levels in opened.items()}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()):
        raise SystemExit(f"the readers disagree on the level shapes: {shapes}")
    return first


def warm_up(path: Path) -> None:
    """Pay each reader's one-time costs (imports, codecs, thread pools: about a second) on an
    instance that is then dropped, so that the timed ones start with nothing but that."""
    for open_reader in READERS.values():
        levels = open_reader(path)
        with napari_indexer(levels, cache=False)():
            np.asarray(levels[-1][:TILE, :TILE])


def run(opened: dict[str, list], requests: list[Request], cache: bool) -> dict[str, list[float]]:
    """Time every request with every reader, alternating readers step by step."""
    names = list(opened)
    indexers = {n: napari_indexer(opened[n], cache) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for i, req in enumerate(requests):
        for name in names if i % 2 == 0 else names[::-1]:
            times[name].append(fetch(opened[name], req, indexers[name]))
    return times


# --------------------------------------------------------------------------- report


def stats_ms(values: list[float]) -> tuple[float, float]:
    """(median, 95th percentile) in milliseconds."""
    med, p95 = np.percentile(np.asarray(values) * 1e3, [50, 95])
    return float(med), float(p95)


def print_report(times: dict[str, list[float]], requests: list[Request]) -> bool:
    """Print the opening view, the tables of the steps and the target line; True when met.

    The first request is the home view (opening the slide): shown, not in the statistics."""
    home = requests[0]
    print(f"opening view (whole slide, level {home.level}, {home.pixels / 1e6:.2f} Mpx, not in "
          "the statistics): " + ", ".join(f"{n} {v[0] * 1e3:.1f} ms" for n, v in times.items()))
    steps = requests[1:]
    kinds = ["all", *dict.fromkeys(r.kind for r in steps)]
    heads = [f"{k} (n={len(select(steps, steps, k))})" for k in kinds]
    print(f"{'reader':<11}" + "".join(f"{h:>22}" for h in heads) + "   median / p95 ms")
    for name, values in times.items():
        cells = [stats_ms(select(values[1:], steps, k)) for k in kinds]
        print(f"{name:<11}" + "".join(f"{m:>13.1f} / {p:>6.1f}" for m, p in cells))
    (name_a, a), (name_b, b) = ((n, stats_ms(v[1:])) for n, v in times.items())
    ratio_med, ratio_p95 = a[0] / b[0], a[1] / b[1]
    print(f"ratio {name_a} / {name_b}: median {ratio_med:.2f}x, p95 {ratio_p95:.2f}x "
          f"(median {a[0]:.1f} vs {b[0]:.1f} ms; p95 {a[1]:.1f} vs {b[1]:.1f} ms)")
    met = ratio_med <= 1 and ratio_p95 <= 1
    print(f"target: ours <= theirs (median and p95): {'met' if met else 'not met'}")
    return met


def select(values: list, requests: list[Request], kind: str) -> list:
    """The values of the requests of one kind ("all": every one)."""
    if kind == "all":
        return list(values)
    return [v for v, r in zip(values, requests) if r.kind == kind]


def describe_plan(
    slide: BuiltSlide, requests: list[Request], opened: dict[str, list], canvas: tuple[int, int]
) -> None:
    size = slide.shapes[0][0]
    mb = slide.path.stat().st_size / 2**20
    print(f"slide: {size} x {size} px Aperio-like SVS, {len(slide.shapes)} levels "
          f"(smallest {slide.shapes[-1][1]} px), {TILE} px JPEG tiles Q{JPEG_QUALITY}, "
          f"tissue on {slide.tissue_fraction:.0%} of the level-0 tiles, {mb:,.0f} MiB, "
          f"built or found in {slide.seconds:.1f} s")
    levels = np.bincount([r.level for r in requests], minlength=len(slide.shapes))
    mpx = np.median([r.pixels for r in requests]) / 1e6
    print(f"views: {len(requests)} on a {canvas[1]}x{canvas[0]} canvas (home view first); "
          f"fetches per level {levels.tolist()}; median region {mpx:.2f} Mpx")
    for name, levels_ in opened.items():
        blocks = levels_[0].chunksize
        print(f"  {name}: dask blocks {blocks[1]}x{blocks[0]}x{blocks[2]} at level 0")
    print("page cache: the file is read once before timing; the readers alternate step by "
          "step, the first of each step swapping")


def canvas_size(text: str) -> tuple[int, int]:
    """'WxH' -> (rows, columns)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 1920x1080, got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"canvas {text} is too small (16 px at least)")
    return (h, w)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="slide side in px (>= 1024)")
    parser.add_argument("--steps", type=int, default=200,
                        help="pans, zooms and jumps after the home view")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="build the slide here and keep it (reused)")
    parser.add_argument("--canvas", type=canvas_size, default=CANVAS, metavar="WxH",
                        help="canvas in screen pixels (default 1920x1080)")
    parser.add_argument("--napari-cache", action="store_true",
                        help="also use napari's opportunistic dask cache (off: readers alone)")
    args = parser.parse_args(argv)
    if args.size < MIN_LEVEL_SIDE or args.steps < 1:
        parser.error(f"--size must be at least {MIN_LEVEL_SIDE} and --steps at least 1")
    print(describe_machine())
    with tempfile.TemporaryDirectory(prefix="napari-her2-view-") as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        slide = build_slide(folder, args.size, args.seed)
        warm_page_cache(slide.path)
        warm_up(slide.path)
        opened = {name: open_reader(slide.path) for name, open_reader in READERS.items()}
        shapes = check_same_levels(opened)
        views = view_steps(slide, args.steps, np.random.default_rng(args.seed), args.canvas)
        requests = plan_requests(views, shapes, args.canvas)
        describe_plan(slide, requests, opened, args.canvas)
        print(f"napari's opportunistic dask cache: {'on' if args.napari_cache else 'off'}")
        print_report(run(opened, requests, args.napari_cache), requests)
        opened.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
