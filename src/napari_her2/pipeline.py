"""Score a whole slide end to end: tissue -> grid -> tiles -> model -> slide score -> report.

``score_slide`` is the Python entry point (and what the CLI and batch mode call);
``prepare_scoring`` + ``inference.iter_scoring`` + ``build_report`` are its steps, which the
napari widget drives one by one from a worker thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import Her2Error
from .inference import ScoringUpdate, Timings, iter_scoring
from .predict import TilePredictor
from .results import TileResults
from .slide import Slide, open_slide
from .stain_check import StainCheck, check_stain
from .tiling import TileGrid, make_grid
from .tissue import TissueMask, TissueParams, detect_tissue

log = logging.getLogger(__name__)

ORGANS = ("breast", "gastric")
SPECIMENS = ("resection", "biopsy")


@dataclass(frozen=True)
class ScoringParams:
    """How a slide is tiled and scored. target_mpp None = the model's own resolution."""

    tile_size: int = 256
    target_mpp: float | None = None
    organ: str = "breast"
    specimen: str = "resection"
    min_tissue: float = 0.25
    batch_size: int = 32
    workers: int = 2
    device: str = "auto"
    seed: int = 0
    #: a slide-level checkpoint (WHSPN or attention MIL) that makes the call instead of the
    #: guideline rule; None = the ASCO/CAP rule over tile fractions
    slide_model: str | None = None
    tissue: TissueParams = field(default_factory=TissueParams)

    def __post_init__(self) -> None:
        if self.organ not in ORGANS:
            raise Her2Error(f"organ must be one of {', '.join(ORGANS)}, got {self.organ!r}")
        if self.specimen not in SPECIMENS:
            raise Her2Error(f"specimen must be one of {', '.join(SPECIMENS)}, got {self.specimen!r}")
        if not 16 <= self.tile_size <= 4096:
            raise Her2Error(f"tile size must be 16-4096 px, got {self.tile_size}")
        if self.target_mpp is not None and not 0.05 <= self.target_mpp <= 50:
            raise Her2Error(f"target resolution must be 0.05-50 µm/px, got {self.target_mpp}")
        if self.batch_size < 1:
            raise Her2Error(f"batch size must be at least 1, got {self.batch_size}")

    def resolved_mpp(self, predictor: TilePredictor) -> float:
        return float(self.target_mpp or predictor.target_mpp or 0.5)


@dataclass
class SlideReport:
    """Everything known about one scored slide."""

    slide: Slide
    predictor: TilePredictor
    params: ScoringParams
    tissue: TissueMask
    grid: TileGrid
    results: TileResults
    score: Any  # scoring.SlideScore
    timings: Timings
    stain: StainCheck | None = None
    slide_model: Any = None  # aggregate.SlideModelResult

    @property
    def method(self) -> str:
        """What made the call: the guideline rule or a slide-level model."""
        return self.slide_model.method if self.slide_model is not None else self.score.method

    def call(self) -> dict[str, Any]:
        """score, category and confidence of the method that made the call."""
        if self.slide_model is None:
            rule = self.score.to_dict()
            return {k: rule.get(k) for k in ("score", "category", "confidence")}
        m = self.slide_model
        probs = {c: float(p) for c, p in zip(m.classes, m.probs)}
        return {"score": m.score, "category": m.category, "confidence": probs.get(m.score)}

    def to_dict(self) -> dict[str, Any]:
        """The slide report JSON (see README: report fields)."""
        score = self.score.to_dict()
        call = self.call()
        mpp = self.slide.require_mpp()
        params = {k: v for k, v in asdict(self.params).items() if k != "tissue"}
        params["target_mpp"] = self.grid.target_mpp
        params["tissue"] = asdict(self.params.tissue)
        return {
            "slide": str(self.slide.path),
            "score": call["score"],
            "category": call["category"],
            "confidence": call["confidence"],
            "method": self.method,
            "class_fractions": score.get("class_fractions"),
            "n_tiles": int(self.grid.shape[0] * self.grid.shape[1]),
            "n_tissue_tiles": int(self.grid.n_tissue),
            "n_scored_tiles": len(self.results),
            "n_unreadable_tiles": int((~self.results.readable).sum()),
            "slide_score": score,
            "slide_model": None if self.slide_model is None else self.slide_model.to_dict(),
            "model": {
                "name": self.predictor.name,
                "sha256": self.predictor.sha256,
                "classes": list(self.predictor.classes),
            },
            "params": params,
            "mpp": {"x": mpp.x, "y": mpp.y, "source": self.slide.mpp_source},
            "grid": {
                "level": self.grid.level,
                "shape": list(self.grid.shape),
                "tile_size0": list(self.grid.tile_size0),
                "read_size": list(self.grid.read_size),
            },
            "tissue_fraction": round(self.tissue.fraction, 4),
            "stain_check": None if self.stain is None else self.stain.to_dict(),
            "warnings": [self.stain.warning] if self.stain and self.stain.warning else [],
            "timings": self.timings.to_dict(),
            "version": __version__,
        }


def as_slide(slide_or_path: Slide | str | os.PathLike, mpp: float | None = None) -> Slide:
    """A Slide from a Slide or a path; ``mpp`` overrides the file's resolution."""
    if isinstance(slide_or_path, Slide):
        return slide_or_path.with_mpp(mpp) if mpp is not None else slide_or_path
    return open_slide(slide_or_path, mpp=mpp)


def as_predictor(model: str | os.PathLike | TilePredictor, device: str = "auto") -> TilePredictor:
    """A ready predictor from a registry name, a checkpoint path or a predictor."""
    if isinstance(model, TilePredictor):
        return model
    from .models import load_predictor

    return load_predictor(str(model), device=device)


def prepare_scoring(slide: Slide, predictor: TilePredictor, params: ScoringParams) -> tuple[TissueMask, TileGrid]:
    """Tissue mask and tile grid for scoring ``slide`` with ``predictor``."""
    slide.require_mpp()
    tissue = detect_tissue(slide, params.tissue)
    grid = make_grid(
        slide, tissue, tile_size=params.tile_size, target_mpp=params.resolved_mpp(predictor),
        min_tissue=params.min_tissue,
    )
    return tissue, grid


def slide_score(results: TileResults, params: ScoringParams):
    """The slide score of (possibly partial) results by the guideline rule."""
    from .scoring import score_tiles

    return score_tiles(results, organ=params.organ, specimen=params.specimen, seed=params.seed)


def build_report(slide, predictor, params, tissue, grid, results, timings,
                 stain: StainCheck | None = None, slide_model=None) -> SlideReport:
    """The report of a scored slide; ``slide_model`` (a loaded aggregate.SlideModel), when
    given, makes the call from the tile results."""
    model_result = None
    if slide_model is not None and len(results):
        model_result = slide_model.score(results, seed=params.seed)
    return SlideReport(slide, predictor, params, tissue, grid, results,
                       slide_score(results, params), timings, stain, model_result)


def stain_of(slide: Slide, tissue: TissueMask) -> StainCheck | None:
    """Stain check of the slide's tissue (logged as a warning when it is not DAB)."""
    if tissue.thumbnail is None:
        return None
    check = check_stain(tissue.thumbnail, tissue.mask)
    if check.warning:
        log.warning("%s: %s", slide.name, check.warning)
    return check


@dataclass
class Prepared:
    """First item of :func:`iter_score_slide`: where the tiles will go, before any is scored."""

    slide: Slide
    predictor: TilePredictor
    params: ScoringParams
    tissue: TissueMask
    grid: TileGrid
    stain: StainCheck | None = None


def iter_score_slide(
    slide_or_path: Slide | str | os.PathLike,
    model: str | os.PathLike | TilePredictor = "dab-membrane",
    *,
    mpp: float | None = None,
    params: ScoringParams | None = None,
    cancel: threading.Event | None = None,
) -> Generator[Prepared | ScoringUpdate, None, SlideReport]:
    """Score a slide step by step: yields :class:`Prepared`, then one ScoringUpdate per
    batch; returns the :class:`SlideReport`. Everything slow happens inside the generator,
    so a GUI can run it whole in a worker thread."""
    t0 = time.perf_counter()
    params = params or ScoringParams()
    slide = as_slide(slide_or_path, mpp)
    predictor = as_predictor(model, params.device)
    if params.target_mpp is not None and hasattr(predictor, "at_mpp"):
        predictor = predictor.at_mpp(params.target_mpp)  # a scorer measuring in microns
    slide_model = None
    if params.slide_model:  # loaded before the tiles, so a bad checkpoint fails at once
        from .aggregate import load_slide_model

        slide_model = load_slide_model(params.slide_model, device="cpu")
    tissue, grid = prepare_scoring(slide, predictor, params)
    log.info("%s: %d tissue tiles of %d", slide.name, grid.n_tissue, grid.shape[0] * grid.shape[1])
    stain = stain_of(slide, tissue)
    yield Prepared(slide, predictor, params, tissue, grid, stain)
    updates = iter_scoring(slide, predictor, grid, batch_size=params.batch_size,
                           workers=params.workers, cancel=cancel)
    timings = Timings()
    while True:
        try:
            update = next(updates)
        except StopIteration as stop:
            results = stop.value
            break
        timings = update.timings
        yield update
    timings.total = time.perf_counter() - t0
    return build_report(slide, predictor, params, tissue, grid, results, timings, stain,
                        slide_model)


def score_slide(
    slide_or_path: Slide | str | os.PathLike,
    model: str | os.PathLike | TilePredictor = "dab-membrane",
    *,
    mpp: float | None = None,
    params: ScoringParams | None = None,
    progress: Callable[[ScoringUpdate], None] | None = None,
    cancel: threading.Event | None = None,
    **overrides: Any,
) -> SlideReport:
    """Score a slide and return its :class:`SlideReport`.

    ``overrides`` are ScoringParams fields (tile_size=, target_mpp=, organ=, device=, ...).
    """
    steps = iter_score_slide(slide_or_path, model, mpp=mpp, params=_merge(params, overrides),
                             cancel=cancel)
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress is not None and isinstance(step, ScoringUpdate):
            progress(step)


def _merge(params: ScoringParams | None, overrides: dict[str, Any]) -> ScoringParams:
    base = params or ScoringParams()
    if not overrides:
        return base
    unknown = set(overrides) - set(ScoringParams.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown scoring parameter(s): {', '.join(sorted(unknown))}")
    fields = {**asdict(base), **overrides}
    fields["tissue"] = base.tissue
    return ScoringParams(**fields)


def write_outputs(report: SlideReport, out_dir: str | os.PathLike, *,
                  csv: bool = False) -> dict[str, Path]:
    """Write ``<stem>.geojson`` (tiles) and ``<stem>.json`` (report) into ``out_dir``, and
    with ``csv`` ``<stem>.csv`` (one row per tile: box, class, probabilities, features)."""
    from .export import (
        ensure_out_dir,
        tiles_to_geojson,
        write_geojson,
        write_report_json,
        write_tiles_csv,
    )

    out = ensure_out_dir(out_dir)
    stem = report.slide.path.stem if report.slide.path.is_file() else report.slide.path.name
    geo = write_geojson(out / f"{stem}.geojson", tiles_to_geojson(report.results, name=stem))
    js = write_report_json(out / f"{stem}.json", report.to_dict())
    written = {"geojson": geo, "report": js}
    if csv:
        written["csv"] = write_tiles_csv(out / f"{stem}.csv", report.results)
    return written
