"""What a scorer takes from the slide before its first tile (the organ's rule and the slide's
stain vectors, from the tissue thumbnail), and the stain check of that tissue."""

from __future__ import annotations

import logging

from ..ihc.stain_check import StainCheck, check_stain
from ..ihc.tissue import TissueMask
from ..params import ScoringParams
from ..predict import TilePredictor
from ..slide import Slide

log = logging.getLogger(__name__)


def adapt_to_slide(predictor: TilePredictor, params: ScoringParams,
                   tissue: TissueMask) -> TilePredictor:
    """A scorer that adapts to the organ and the slide's stains does so (others unchanged)."""
    if hasattr(predictor, "for_organ"):
        predictor = predictor.for_organ(params.call.organ.value)
    if hasattr(predictor, "for_slide") and tissue.thumbnail is not None:
        predictor = predictor.for_slide(tissue.thumbnail, tissue.mask)
    return predictor


def stain_of(slide: Slide, tissue: TissueMask) -> StainCheck | None:
    """Stain check of the slide's tissue (logged as a warning when it is not DAB)."""
    if tissue.thumbnail is None:
        return None
    check = check_stain(tissue.thumbnail, tissue.mask)
    if check.warning:
        log.warning("%s: %s", slide.name, check.warning)
    return check
