"""From tile results to the slide call: guideline rules, WHSPN and attention MIL, one result type.

:func:`call_slide` is the single entry point: the guideline rule (default) or a loaded
slide-level model makes a :class:`SlideCall`. Either way :func:`modal_call` (``modal.py``)
makes the call and its confidence from the shares of the scores: the modal score, its share,
and a borderline pair when that share is below one half.
"""

from __future__ import annotations

from ..tiles.results import TileResults
from .call import (
    CATEGORY_TEXT,
    Evidence,
    NoCallReason,
    SlideCall,
    call_from_model,
    call_from_rule,
    no_call,
)
from .cells import MIN_TUMOUR_CELLS, score_cells
from .modal import ModalCall, modal_call
from .rules import (
    CATEGORIES,
    Her2LowEvidence,
    RuleParams,
    SlideScore,
    get_rule,
    score_labels,
    score_tiles,
    tumour_fractions,
)
from .slide_models import SlideModel, SlideModelResult, load_slide_model

__all__ = [
    "CATEGORIES",
    "CATEGORY_TEXT",
    "Evidence",
    "Her2LowEvidence",
    "ModalCall",
    "NoCallReason",
    "RuleParams",
    "SlideCall",
    "SlideModel",
    "SlideModelResult",
    "SlideScore",
    "call_from_model",
    "call_from_rule",
    "call_slide",
    "get_rule",
    "score_cells",
    "load_slide_model",
    "modal_call",
    "no_call",
    "score_labels",
    "score_tiles",
    "tumour_fractions",
]


def call_slide(results: TileResults, *, organ: str = "breast", specimen: str = "resection",
               seed: int = 0, n_samples: int = 1000, slide_model: SlideModel | None = None,
               n_bags: int | None = None, bag_size: int | None = None) -> SlideCall:
    """The slide call of (possibly partial) tile results: the guideline rule (over tumour
    cells when the scorer found cells, else over tiles), or ``slide_model`` when given (the
    rule's output is kept as evidence either way)."""
    if results.cells is not None:
        rule = score_cells(results, organ, specimen, n_samples=n_samples, seed=seed)
    else:
        rule = score_tiles(results, organ, specimen, n_samples=n_samples, seed=seed)
    if slide_model is None or rule.score is None:
        call = call_from_rule(rule)
        if results.cells is not None and call.no_call is NoCallReason.NO_TUMOUR:
            call = call.without_score(NoCallReason.NO_TUMOUR, (
                f"fewer than {MIN_TUMOUR_CELLS} tumour cells in {rule.n_tiles} tissue tiles"))
        return call
    return slide_model.call(results, rule, n_bags=n_bags, bag_size=bag_size, seed=seed)
