"""What a scorer takes from the slide before its first tile (the organ's rule and the slide's
stain vectors, from tissue tiles read at the scoring resolution), and the stain check of the
tissue thumbnail."""

from __future__ import annotations

import logging

import numpy as np

from ..ihc.stain_check import StainCheck, check_stain
from ..ihc.tissue import TissueMask
from ..params import ScoringParams
from ..predict import TilePredictor
from ..slide import Slide
from ..tiles.grid import TileGrid
from .inference import read_tile

log = logging.getLogger(__name__)

#: tissue tiles read for the stain-vector estimate. A thumbnail's pixels mix nuclei with the
#: cytoplasm and stroma around them, which pulls the haematoxylin vector towards the
#: background's tint; tiles at the scoring resolution show the nuclei as the scorer sees them.
STAIN_SAMPLE_TILES = 16


def stain_sample(slide: Slide, grid: TileGrid, n: int = STAIN_SAMPLE_TILES) -> np.ndarray | None:
    """Up to ``n`` tissue tiles of ``grid``, evenly spread over its tissue tiles in reading
    order, as uint8 (k, T, T, 3); None when the grid has no readable tissue tile."""
    rows, cols = grid.tissue_tiles()
    if len(rows) == 0:
        return None
    picks = np.unique(np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int))
    tiles = [read_tile(slide, grid, int(rows[i]), int(cols[i])) for i in picks]
    read = [t for t in tiles if t is not None]
    return np.stack(read) if read else None


def with_glass(sample: np.ndarray, thumbnail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of the tissue tiles ``sample`` and of the whole ``thumbnail``, (n, 3), with
    a mask that keeps only the tiles' for the stain vectors; the background is read from all
    of them."""
    tiles, thumb = sample[..., :3].reshape(-1, 3), thumbnail[..., :3].reshape(-1, 3)
    mask = np.zeros(len(tiles) + len(thumb), bool)
    mask[: len(tiles)] = True
    return np.concatenate([tiles, thumb]), mask


def adapt_to_slide(predictor: TilePredictor, params: ScoringParams, tissue: TissueMask,
                   slide: Slide | None = None, grid: TileGrid | None = None) -> TilePredictor:
    """A scorer that adapts to the organ and the slide's stains does so (others unchanged).

    The stain vectors are estimated from :func:`stain_sample` of ``grid`` when a slide and its
    grid are given and hold a readable tissue tile, else from the tissue thumbnail. The
    background (the colour of glass) is read from the tiles and the whole thumbnail together
    (:func:`with_glass`): tissue tiles of a slide may hold no glass, its thumbnail does."""
    if hasattr(predictor, "for_organ"):
        predictor = predictor.for_organ(params.call.organ.value)
    if not hasattr(predictor, "for_slide"):
        return predictor
    sample = stain_sample(slide, grid) if slide is not None and grid is not None else None
    if sample is not None:
        if tissue.thumbnail is None:
            return predictor.for_slide(sample)
        return predictor.for_slide(*with_glass(sample, tissue.thumbnail))
    if tissue.thumbnail is not None:
        return predictor.for_slide(tissue.thumbnail, tissue.mask)
    return predictor


def stain_of(slide: Slide, tissue: TissueMask) -> StainCheck | None:
    """Stain check of the slide's tissue (logged as a warning when it is not DAB)."""
    if tissue.thumbnail is None:
        return None
    check = check_stain(tissue.thumbnail, tissue.mask)
    if check.warning:
        log.warning("%s: %s", slide.name, check.warning)
    return check
