"""Scoring a tissue microarray core by core: each core found by :mod:`.dearray` is scored
as its own region, with the stain adaptation, the stain check and the call made from its
pixels and tiles only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import tumour_cell_columns
from ..ihc.tissue import TissueMask, tissue_mask_from_rgb
from ..params import ScoringParams
from ..scoring import NoCallReason, SlideCall, no_call
from ..slide import Slide
from ..tiles.regions import RegionError
from ..tiles.results import TileResults
from .dearray import Core, TmaError, TmaGrid, find_cores

log = logging.getLogger(__name__)

#: a core's own tissue mask is computed over its disc and this fraction of its radius more
CROP_MARGIN = 0.25

@dataclass(frozen=True)
class CoreScore:
    """A core's call and the tiles behind it (None for a missing core)."""

    core: Core
    call: SlideCall
    results: TileResults | None = None


@dataclass
class TmaReport:
    """Every core of a TMA slide with its call; ``mpp`` (x, y) µm per level-0 px."""

    slide_path: Path
    tma: TmaGrid
    scores: list[CoreScore]
    mpp: tuple[float, float]
    model: str

    @property
    def stem(self) -> str:
        p = self.slide_path
        return p.stem if p.is_file() else p.name

    def rows(self) -> list[dict[str, Any]]:
        """One CSV row per grid position (missing cores included)."""
        mx, my = self.mpp
        out = []
        for s in self.scores:
            c, call = s.core, s.call
            out.append({
                "core": c.id, "row": c.row + 1, "column": c.col + 1,
                "centre_x_um": round(c.centre[0] * mx, 1), "centre_y_um": round(c.centre[1] * my, 1),
                "diameter_um": round(c.diameter * math.sqrt(mx * my), 1),
                "tissue_fraction": round(c.tissue_fraction, 3), "missing": c.missing,
                "n_tiles": 0 if s.results is None else len(s.results),
                "score": call.score or "", "category": call.category or "",
                "confidence": "" if call.confidence is None else round(call.confidence, 3),
                "borderline": " / ".join(call.borderline) if call.borderline else "",
                "no_call_reason": "" if call.no_call is None else call.no_call.value,
                **tumour_cell_columns(None if s.results is None or s.results.cells is None
                                      else s.results.cells.summary()),
            })
        return out


def iter_score_tma(slide_or_path: Slide | str | os.PathLike, model: str | None = None, *,
                   mpp: float | None = None, params: ScoringParams | None = None,
                   shape: tuple[int, int] | None = None, cancel: threading.Event | None = None,
                   ) -> Generator[TmaGrid | CoreScore, None, TmaReport]:
    """Dearray a TMA slide and score each core as its own region: yields the
    :class:`TmaGrid`, then a :class:`CoreScore` per position; returns the :class:`TmaReport`.

    Each core gets what a slide of that core alone would: the stain adaptation and the stain
    check look at the core's pixels only, and its call is made from its tiles only."""
    from ..ihc.tissue import detect_tissue
    from ..run.adapt import adapt_to_slide, stain_of
    from ..run.inference import iter_scoring, run_scoring
    from ..run.pipeline import as_slide, load_models, make_call, scan_resolution
    from ..tiles.grid import make_grid

    params = params or ScoringParams()
    slide = as_slide(slide_or_path, mpp)
    mpp0 = slide.require_mpp()
    models = load_models(model or None, params, scan_mpp=scan_resolution(slide))
    params, base, slide_model = models.params, models.predictor, models.slide_model
    tile_size, target_mpp = models.tile_size, models.target_mpp
    tissue = detect_tissue(slide, params.tissue)
    try:
        tma = find_cores(tissue, shape)
    except TmaError as err:
        raise TmaError(f"{slide.path}: {err}") from None
    yield tma
    scores = []
    for core in tma.cores:
        if core.missing:
            score = CoreScore(core, no_call(NoCallReason.NO_TISSUE, "no core at this position"))
        else:
            region = core.region()
            own = core_tissue(tissue, core, params)
            seen = region.crop_tissue(own)
            core = dataclasses.replace(core, tissue_fraction=_disc_fraction(seen, core))
            grid = make_grid(slide, own, tile_size=tile_size, target_mpp=target_mpp,
                             min_tissue=params.grid.min_tissue)
            try:
                core_grid = region.restrict(grid)
            except RegionError as err:
                score = CoreScore(core, no_call(NoCallReason.NO_TISSUE, str(err)))
            else:
                predictor = adapt_to_slide(base, params, seen, slide, core_grid)
                results = run_scoring(iter_scoring(
                    slide, predictor, core_grid, batch_size=params.model.batch_size,
                    workers=params.model.workers, cancel=cancel, embed=models.embed))
                call = make_call(results, params, core_grid, stain_of(slide, seen), slide_model,
                                 predictor=predictor)
                score = CoreScore(core, call, results)
        scores.append(score)
        yield score
    return TmaReport(slide.path, tma, scores, (mpp0.x, mpp0.y), base.name)


def core_tissue(tissue: TissueMask, core: Core, params: ScoringParams) -> TissueMask:
    """The tissue mask of one core computed from its own pixels (a pale core next to strongly
    stained ones is seen as it would be alone), zero elsewhere."""
    if tissue.thumbnail is None:
        return tissue
    dy, dx = tissue.downsample
    r = core.diameter / 2 * (1 + CROP_MARGIN)
    (cx, cy), (h, w) = core.centre, tissue.mask.shape
    r0, r1 = max(0, int((cy - r) / dy)), min(h, int(math.ceil((cy + r) / dy)))
    c0, c1 = max(0, int((cx - r) / dx)), min(w, int(math.ceil((cx + r) / dx)))
    mask = np.zeros_like(tissue.mask)
    if r1 > r0 and c1 > c0:
        mpp = float(np.sqrt(tissue.mpp[0] * tissue.mpp[1]))
        texture = None if tissue.texture is None else tissue.texture[r0:r1, c0:c1]
        mask[r0:r1, c0:c1] = tissue_mask_from_rgb(tissue.thumbnail[r0:r1, c0:c1], mpp,
                                                  params.tissue, texture)
    return dataclasses.replace(tissue, mask=mask)


def _disc_fraction(seen: TissueMask, core: Core) -> float:
    """Tissue over the core's disc (``seen``: the mask cut to the core)."""
    disc = math.pi * (core.diameter / 2) ** 2 / (seen.downsample[0] * seen.downsample[1])
    return float(min(1.0, seen.mask.sum() / max(disc, 1e-9)))


def score_tma(slide_or_path: Slide | str | os.PathLike, model: str | None = None, *,
              mpp: float | None = None, params: ScoringParams | None = None,
              shape: tuple[int, int] | None = None) -> TmaReport:
    """Dearray and score a TMA slide (see :func:`iter_score_tma`)."""
    steps = iter_score_tma(slide_or_path, model, mpp=mpp, params=params, shape=shape)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
