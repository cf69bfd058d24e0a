"""Score a whole slide end to end: tissue -> grid -> tiles -> model -> slide call -> report.

``score_slide`` is the Python entry point (and what the CLI, batch mode and ``evaluate``
call); ``iter_score_slide`` yields its steps, which the napari widget drives from a worker
thread. The pipeline only orchestrates: slides, tissue, tiling, models, scoring and exports
each live in their own module and never call back up.

The tile geometry comes from the scorer: a CNN is fed tiles at exactly its model card's
input size and µm/px (an override that differs is refused); the weight-free scorer accepts
any tile size and resolution (default: its card's).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..errors import MissingMppError, SlideReadError
from ..ihc.stain_check import StainCheck
from ..ihc.tissue import TissueMask, detect_tissue
from ..models.validation import Validation, validation_of
from ..params import GridParams, ModelParams, ParamError, ScoringParams
from ..predict import TilePredictor
from ..scoring import NoCallReason, SlideCall, SlideModel, call_slide, no_call
from ..slide import Slide, open_slide
from ..tiles.grid import TileGrid, make_grid, scoring_notes
from ..tiles.regions import Region, as_region
from ..tiles.results import TileResults
from .adapt import adapt_to_slide, stain_of
from .inference import ScoringUpdate, Timings, iter_scoring

if TYPE_CHECKING:
    from ..models.pairing import PairedEncoder

log = logging.getLogger(__name__)


@dataclass
class SlideReport:
    """Everything known about one scored slide; ``call`` is the one slide call."""

    slide: Slide
    predictor: TilePredictor
    params: ScoringParams
    tissue: TissueMask
    grid: TileGrid
    results: TileResults
    call: SlideCall
    timings: Timings
    stain: StainCheck | None = None
    slide_model: SlideModel | None = None
    region: Region | None = None

    @property
    def stem(self) -> str:
        """Output file stem: the file name without suffix (a DICOM folder's name), cut with
        a hash when too long for a file name."""
        from ..export import safe_stem

        p = self.slide.path
        return safe_stem(p.stem if p.is_file() else p.name)

    def to_dict(self) -> dict[str, Any]:
        """The slide report JSON (see README: report fields)."""
        mpp = self.slide.require_mpp()
        ev = self.call.evidence
        return {
            "slide": str(self.slide.path),
            **{k: v for k, v in self.call.to_dict().items() if k != "evidence"},
            "headline": self.call.headline(),
            "class_fractions": ev.class_fractions or None,
            "evidence": ev.to_dict(),
            "n_tiles": int(self.grid.shape[0] * self.grid.shape[1]),
            "n_tissue_tiles": int(self.grid.n_tissue),
            "n_scored_tiles": len(self.results),
            "n_unreadable_tiles": int((~self.results.readable).sum()),
            "cells": None if self.results.cells is None else self.results.cells.summary(),
            "slide_model": None if self.slide_model is None else {
                "name": self.slide_model.name, "sha256": self.slide_model.sha256,
                "method": self.slide_model.method,
                **({"encoder": enc} if (enc := self.slide_model.card.encoder) else {})},
            "model": {
                "name": self.predictor.name,
                "sha256": self.predictor.sha256,
                "classes": list(self.predictor.classes),
                **slide_estimates(self.predictor),
            },
            "params": self.params.to_dict(),
            "mpp": {"x": mpp.x, "y": mpp.y, "source": self.slide.mpp_source},
            "grid": {
                "tile_size": self.grid.tile_size,
                "target_mpp": self.grid.target_mpp,
                "level": self.grid.level,
                "shape": list(self.grid.shape),
                "tile_size0": list(self.grid.tile_size0),
                "read_size": list(self.grid.read_size),
            },
            "tissue_fraction": round(self.tissue.fraction, 4),
            "region": None if self.region is None else self.region.summary((mpp.x, mpp.y)),
            "stain_check": None if self.stain is None else self.stain.to_dict(),
            "warnings": ([self.stain.warning] if self.stain and self.stain.warning else [])
                        + scoring_notes(self.predictor, self.slide.mpp_source),
            "timings": self.timings.to_dict(),
            "version": __version__,
        }


def slide_estimates(predictor: TilePredictor) -> dict[str, Any]:
    """What a predictor estimated from this slide (the dab-membrane scorer's stain vectors),
    reported beside its identity; nothing for a predictor that estimates nothing."""
    estimates = getattr(predictor, "slide_estimates", None)
    return estimates() if callable(estimates) else {}


def as_slide(slide_or_path: Slide | str | os.PathLike, mpp: float | None = None) -> Slide:
    """A Slide from a Slide or a path; ``mpp`` overrides the file's resolution."""
    if isinstance(slide_or_path, Slide):
        return slide_or_path.with_mpp(mpp) if mpp is not None else slide_or_path
    return open_slide(slide_or_path, mpp=mpp)


def as_predictor(model: str | os.PathLike | TilePredictor, device: str = "auto") -> TilePredictor:
    """A ready predictor from a registry name, a checkpoint path or a predictor."""
    if isinstance(model, TilePredictor):
        return model
    from ..models import load_predictor

    return load_predictor(str(model), device=device)


def fit_geometry(predictor: TilePredictor, grid: GridParams, scan_mpp: float | None = None
                 ) -> tuple[TilePredictor, int, float]:
    """(predictor, tile size px, µm/px) the tiles are cut at: the scorer's card decides.

    A scorer that measures in microns (``at_mpp``: the weight-free one) takes any size and
    resolution; a network takes its card's, and an override that differs is refused. Where
    no resolution is asked for, a scorer with ``geometry_for_scan`` picks its tiles from the
    scan's own resolution (``scan_mpp``, level 0; the cell scorer reads a ×40 scan at ×40),
    and a tile size asked for still wins."""
    card_size, card_mpp = int(predictor.input_size), predictor.target_mpp
    if hasattr(predictor, "at_mpp"):
        size, mpp = card_size, float(grid.target_mpp or card_mpp or 0.5)
        if grid.target_mpp is None and scan_mpp and hasattr(predictor, "geometry_for_scan"):
            size, mpp = predictor.geometry_for_scan(scan_mpp)
        return predictor.at_mpp(mpp), int(grid.tile_size or size), float(mpp)
    if grid.tile_size is not None and grid.tile_size != card_size:
        raise ParamError(f"{predictor.name} takes {card_size} px tiles (its model card); "
                         f"tile size {grid.tile_size} cannot be used with it")
    if card_mpp is None:
        if grid.target_mpp is None:
            raise ParamError(f"{predictor.name}: its model card gives no µm/px; set the tile "
                             "resolution (--target-mpp)")
        return predictor, card_size, float(grid.target_mpp)
    if grid.target_mpp is not None and not math.isclose(grid.target_mpp, card_mpp, rel_tol=1e-3):
        raise ParamError(f"{predictor.name} was trained at {card_mpp:g} µm/px (its model card); "
                         f"tiles at {grid.target_mpp:g} µm/px cannot be used with it")
    return predictor, card_size, float(card_mpp)


def with_paired_tile_model(params: ScoringParams) -> ScoringParams:
    """``params`` with the tile model the slide model was trained over, when a slide model is
    chosen, its card names its tile model (or an encoder that is an installed tile model),
    and the tile model was left at the weight-free default. A CheckpointError (one line) when
    that tile model is not installed: raised before anything is scored."""
    from ..models import read_card
    from ..models.pairing import TileModelRef, paired_tile_model, slide_pairing

    slide_model = params.call.slide_model
    if not slide_model or params.model.name != ModelParams().name:
        return params
    card = read_card(Path(slide_model))
    # trained over no named tile model (the rule's fractions) or over a foundation encoder
    if not isinstance(slide_pairing(card), TileModelRef):
        return params
    tile = paired_tile_model(card, slide_model)
    log.info("slide model %s: scoring tiles with its tile model %s", slide_model, tile)
    return params.with_overrides(model_name=str(tile))


def check_pairing(predictor: TilePredictor, slide_model: SlideModel | None,
                  encoder: PairedEncoder | None = None) -> None:
    """Refuse, before any tile is read, a slide model used with another tile model than the
    one it was trained over (or a MIL model with a tile model that gives no embeddings and
    no encoder of its own)."""
    from ..errors import CheckpointError
    from ..models.pairing import TileModelRef, slide_pairing

    if slide_model is None:
        return
    ref = slide_pairing(slide_model.card)
    if isinstance(ref, TileModelRef) and not ref.matches(predictor.sha256):
        raise CheckpointError(
            f"{slide_model.name}: this slide model was trained over tile model {ref}; the "
            f"chosen tile model {predictor.name} (sha256 {predictor.sha256[:16]}) is another")
    if slide_model.kind == "mil" and encoder is None and not hasattr(predictor, "model"):
        raise CheckpointError(f"{slide_model.name}: MIL scoring needs tile embeddings, and "
                              f"{predictor.name} gives none; choose a CNN tile model")


@dataclass(frozen=True)
class Models:
    """The tile predictor and slide model a run uses, loaded and checked before any tile,
    with the tile geometry the predictor asks for and the params that name them."""

    params: ScoringParams
    predictor: TilePredictor
    tile_size: int
    target_mpp: float
    slide_model: SlideModel | None
    #: the foundation encoder whose embeddings the MIL slide model takes (None: the tile model's)
    encoder: PairedEncoder | None = None

    @property
    def embed(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """What computes the tiles' embeddings instead of the tile model, or None."""
        return None if self.encoder is None else self.encoder.embed


def load_models(model: str | os.PathLike | TilePredictor | None,
                params: ScoringParams, scan_mpp: float | None = None) -> Models:
    """Load the tile model (``model``, else the params' own, else the one the slide model was
    trained over), the slide model and the foundation encoder it was trained over (if any),
    fit the geometry (for a scan of ``scan_mpp`` µm/px at level 0, when known) and check that
    they belong together: every refusal comes before the first tile is read."""
    from ..models.pairing import paired_encoder
    from ..models.predictors import resolve_device

    if model is None:
        params = with_paired_tile_model(params)
    predictor = as_predictor(model if model is not None else params.model.name,
                             params.model.device.value)
    slide_model = load_slide_model(params)
    encoder = None if slide_model is None else paired_encoder(
        slide_model.card, slide_model.name, predictor.sha256,
        device=str(resolve_device(params.model.device.value)))
    grid = params.grid
    if encoder is not None and hasattr(predictor, "at_mpp"):  # takes any geometry
        grid = encoder.grid(grid)
    predictor, tile_size, target_mpp = fit_geometry(predictor, grid, scan_mpp)
    check_pairing(predictor, slide_model, encoder)
    if encoder is not None:
        encoder.check_tiles(tile_size, target_mpp, predictor.name)
    return Models(params, predictor, tile_size, target_mpp, slide_model, encoder)


def scan_resolution(slide: Slide) -> float:
    """The level-0 µm/px of ``slide`` (the finer axis), or MissingMppError naming the file."""
    return float(min(slide.require_mpp()))


def load_slide_model(params: ScoringParams) -> SlideModel | None:
    """The slide-level checkpoint of ``params`` (loaded before any tile, so that a bad one
    fails at once), or None for the guideline rule."""
    if not params.call.slide_model:
        return None
    from ..scoring import load_slide_model as load

    return load(params.call.slide_model, device="cpu")


def make_call(results: TileResults, params: ScoringParams, grid: TileGrid,
              stain: StainCheck | None = None, slide_model: SlideModel | None = None, *,
              partial: bool = False, predictor: TilePredictor | None = None) -> SlideCall:
    """The slide call of (possibly partial) results, or a no-call with its reason; with the
    validation of the learned model behind it (the slide model, else a learned
    ``predictor``)."""
    c = params.call
    if grid.n_tissue == 0:
        return no_call(NoCallReason.NO_TISSUE, "the tissue mask found no tile with enough tissue")
    call = call_slide(results, organ=c.organ.value, specimen=c.specimen.value, seed=c.seed,
                      n_samples=c.n_samples, slide_model=slide_model, n_bags=c.n_bags,
                      bag_size=c.bag_size)
    if stain is not None and stain.warning:
        call = call.without_score(NoCallReason.STAIN_CHECK, stain.warning)
    call = with_faint_caveat(call, predictor)
    return call.as_partial(partial).with_validation(learned_validation(predictor, slide_model))


def faint_caveat(call: SlideCall, predictor: TilePredictor | None) -> str:
    """What a call of 0 with a 0-vs-1+ comment cannot rule out when its scorer reads tiles
    coarser than ×40 (the scorer's ``faint_caveat``); "" for any other call or scorer."""
    if call.score != "0" or call.evidence.her2_low is None:
        return ""
    return str(getattr(predictor, "faint_caveat", lambda: "")())


def with_faint_caveat(call: SlideCall, predictor: TilePredictor | None) -> SlideCall:
    """The call with :func:`faint_caveat` added to its 0-vs-1+ comment, when there is one:
    faint membranes seen only at ×40 could not show."""
    caveat, low = faint_caveat(call, predictor), call.evidence.her2_low
    if not caveat or low is None:
        return call
    low = replace(low, subcategory=f"{low.subcategory}, {caveat}")
    return replace(call, evidence=replace(call.evidence, her2_low=low))


def learned_validation(predictor: TilePredictor | None,
                       slide_model: SlideModel | None) -> Validation | None:
    """The validation of the learned model that makes the call: the slide model when there
    is one, else a tile model with a card; None for the weight-free scorer."""
    card = slide_model.card if slide_model is not None else getattr(predictor, "card", None)
    return None if card is None else validation_of(card)


@dataclass
class Prepared:
    """First item of :func:`iter_score_slide`: where the tiles will go, before any is scored."""

    slide: Slide
    predictor: TilePredictor
    params: ScoringParams
    tissue: TissueMask
    grid: TileGrid
    stain: StainCheck | None = None
    slide_model: SlideModel | None = None
    region: Region | None = None
    #: computes the MIL's tile embeddings when its encoder is not the tile model
    embed: Callable[[np.ndarray], np.ndarray] | None = None


def prepare(slide_or_path: Slide | str | os.PathLike,
            model: str | os.PathLike | TilePredictor | None = None, *,
            mpp: float | None = None, params: ScoringParams | None = None,
            region: Region | str | os.PathLike | None = None) -> Prepared:
    """Open, load, find tissue and lay the grid: everything before the first tile.

    ``region`` (a :class:`~napari_her2.tiles.regions.Region` or a QuPath GeoJSON path): only tiles
    whose centre lies in it are scored, and the stain adaptation and check look at it only."""
    params = params or ScoringParams()
    slide = as_slide(slide_or_path, mpp)
    models = load_models(model, params, scan_mpp=scan_resolution(slide))
    params, predictor, slide_model = models.params, models.predictor, models.slide_model
    tile_size, target_mpp = models.tile_size, models.target_mpp
    tissue = detect_tissue(slide, params.tissue)
    grid = make_grid(slide, tissue, tile_size=tile_size, target_mpp=target_mpp,
                     min_tissue=params.grid.min_tissue)
    region = as_region(region)
    if region is not None:
        region.check_on_slide(slide.dimensions)
        grid = region.restrict(grid)
    seen = tissue if region is None else region.crop_tissue(tissue)
    log.info("%s: %d tissue tiles of %d", slide.name, grid.n_tissue, grid.shape[0] * grid.shape[1])
    stain = stain_of(slide, seen)
    predictor = adapt_to_slide(predictor, params, seen, slide, grid)
    return Prepared(slide, predictor, params, tissue, grid, stain, slide_model, region,
                    models.embed)


def iter_score_slide(
    slide_or_path: Slide | str | os.PathLike,
    model: str | os.PathLike | TilePredictor | None = None,
    *,
    mpp: float | None = None,
    params: ScoringParams | None = None,
    cancel: threading.Event | None = None,
    region: Region | str | os.PathLike | None = None,
) -> Generator[Prepared | ScoringUpdate, None, SlideReport]:
    """Score a slide step by step: yields :class:`Prepared`, then one ScoringUpdate per
    batch; returns the :class:`SlideReport`. Everything slow happens inside the generator,
    so a GUI can run it whole in a worker thread."""
    t0 = time.perf_counter()
    prep = prepare(slide_or_path, model, mpp=mpp, params=params, region=region)
    yield prep
    m = prep.params.model
    updates = iter_scoring(prep.slide, prep.predictor, prep.grid, batch_size=m.batch_size,
                           workers=m.workers, cancel=cancel, embed=prep.embed)
    timings = Timings()
    while True:
        try:
            update = next(updates)
        except StopIteration as stop:
            return finish(prep, stop.value, t0, timings)
        timings = update.timings
        yield update


def finish(prep: Prepared, results: TileResults, t0: float,
           timings: Timings | None = None) -> SlideReport:
    """The report of a prepared slide whose tiles are scored."""
    timings = timings or Timings()
    timings.total = time.perf_counter() - t0
    call = make_call(results, prep.params, prep.grid, prep.stain, prep.slide_model,
                     predictor=prep.predictor)
    return SlideReport(prep.slide, prep.predictor, prep.params, prep.tissue, prep.grid, results,
                       call, timings, prep.stain, prep.slide_model, prep.region)


def score_slide(
    slide_or_path: Slide | str | os.PathLike,
    model: str | os.PathLike | TilePredictor | None = None,
    *,
    mpp: float | None = None,
    params: ScoringParams | None = None,
    progress: Callable[[ScoringUpdate], None] | None = None,
    cancel: threading.Event | None = None,
    region: Region | str | os.PathLike | None = None,
    **overrides: Any,
) -> SlideReport:
    """Score a slide and return its :class:`SlideReport`.

    ``model``: a registry name, checkpoint name or path, or a predictor (default:
    ``params.model.name``, i.e. ``dab-cells``). ``overrides`` are flat ScoringParams names
    (``tile_size=``, ``target_mpp=``, ``organ=``, ``device=``, ``slide_model=``, ...).
    ``region``: score only inside it (a Region or a QuPath GeoJSON path).
    """
    params = (params or ScoringParams()).with_overrides(**overrides)
    steps = iter_score_slide(slide_or_path, model, mpp=mpp, params=params, cancel=cancel,
                             region=region)
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress is not None and isinstance(step, ScoringUpdate):
            progress(step)


def no_call_for_error(err: Exception) -> SlideCall:
    """The no-call a scoring error stands for (missing µm/px, unreadable slide)."""
    if isinstance(err, MissingMppError):
        return no_call(NoCallReason.MISSING_MPP, str(err))
    if isinstance(err, SlideReadError):
        return no_call(NoCallReason.UNREADABLE, str(err))
    raise err


def write_outputs(report: SlideReport, out_dir: str | os.PathLike, *,
                  csv: bool = False) -> dict[str, Path]:
    """Write the slide's GeoJSON, JSON report (and CSV) through :mod:`napari_her2.export`."""
    from ..export import write_outputs as write

    return write(out_dir, report.stem, report.to_dict(), report.results, csv=csv)
