"""The weight-free ``dab-membrane`` tile scorer: the predictor and its model card.

:class:`DabMembraneScorer` implements ``TilePredictor`` with the measurements and classes of
:mod:`napari_her2.ihc.membrane` on top of the colour deconvolution of
:mod:`napari_her2.ihc.deconvolution`; it adapts to a slide (stain vectors, organ, µm/px) and
shares a batch between threads.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from ..predict import Prediction
from .deconvolution import (
    DEFAULT_DAB,
    DEFAULT_HAEMATOXYLIN,
    angle_deg,
    deconvolve,
    estimate_background,
    estimate_stain_matrix,
    stain_estimates,
    stain_matrix,
)
from .membrane import (
    CLASSES,
    FEATURE_NAMES,
    DabMembraneParams,
    classify,
    measure,
)

__all__ = ["LIMITS", "STAIN_PIXELS", "DabMembraneScorer"]

#: most pixels the stain vectors are estimated from: 16 tiles of 256 px (the stain sample of a
#: slide read at 0.5 µm/px). A larger sample (the same 16 tiles at 0.25 µm/px have 4 times the
#: pixels) is thinned to every k-th pixel, which keeps each pixel's own colour (no averaging
#: that would mix nuclei with the stroma around them). On the seven oesophageal TMA cores read
#: at 0.25 µm/px (``docs/validation.md``) thinning moved the vectors by at most 0.14 degrees
#: and cut the estimate from 0.2-0.4 s to 0.05-0.07 s
STAIN_PIXELS = 16 * 256 * 256

logger = logging.getLogger(__name__)
T = TypeVar("T")

LIMITS = (
    "Research use only, not for diagnosis. A rule-based reading of DAB membrane staining per "
    "tile: it does not tell invasive carcinoma from in-situ carcinoma or normal epithelium, "
    "finds tumour from haematoxylin morphology (large plump nuclei in dense clusters), so solid "
    "sheets of lymphocytes whose nuclei merge can read as tumour, and it reads area fractions "
    "rather than counting cells. It assumes brightfield H-DAB at a known um/px; stain variation (DAB hue, haematoxylin strength, scanner colour) shifts the OD "
    "thresholds, so estimate a per-slide stain matrix or recalibrate the thresholds for a new "
    "lab. Cytoplasmic DAB, edge artefacts, pigment and crush artefacts can read as membrane. "
    "Breast: incomplete moderate/strong staining is called 2+ (equivocal); gastric "
    "(organ='gastric'): long basolateral/lateral membranes count as complete."
)



#: threads that share one batch of tiles, and the fewest tiles worth a thread
MAX_THREADS = 4
MIN_TILES_PER_THREAD = 4


@dataclass
class DabMembraneScorer:
    """The weight-free ``dab-membrane`` tile scorer (implements ``TilePredictor``)."""

    params: DabMembraneParams = field(default_factory=DabMembraneParams)
    name: str = field(default="dab-membrane", init=False)
    classes: tuple[str, ...] = field(default=CLASSES, init=False)
    input_size: int = field(default=256, init=False)
    feature_names: tuple[str, ...] = field(default=FEATURE_NAMES, init=False)

    @property
    def target_mpp(self) -> float:
        """Resolution tiles must be read at: the one the lengths in ``params`` assume."""
        return self.params.mpp

    @property
    def sha256(self) -> str:
        """Hash of the fixed parameters: the scorer has no weights, its thresholds are its
        model. The stain vectors estimated from a slide are not part of it (see
        :meth:`DabMembraneParams.identity_json`); :meth:`slide_estimates` reports them."""
        return hashlib.sha256(self.params.identity_json().encode()).hexdigest()

    def slide_estimates(self) -> dict[str, Any]:
        """What this scorer took from the slide, rounded: the stain vectors and the
        background, and whether they are the defaults or were estimated."""
        return stain_estimates(self.params.haematoxylin, self.params.dab,
                               self.params.background)

    def predict(self, tiles: np.ndarray) -> Prediction:
        """Score uint8 tiles (N, H, W, 3)."""
        tiles = np.asarray(tiles)
        if tiles.ndim != 4 or tiles.shape[-1] != 3:
            raise ValueError(f"expected tiles of shape (N, H, W, 3), got {tiles.shape}")
        if tiles.shape[0] == 0:
            empty = np.zeros((0, len(FEATURE_NAMES)), np.float32)
            return Prediction(np.zeros((0, len(CLASSES)), np.float32), empty)
        feats = self._measure_parallel(tiles)
        return Prediction(classify(feats, self.params), feats)

    def at_mpp(self, mpp: float) -> DabMembraneScorer:
        """The same scorer for tiles read at ``mpp`` µm/px (its lengths are in microns)."""
        if mpp == self.params.mpp:
            return self
        return DabMembraneScorer(replace(self.params, mpp=float(mpp)))  # keeps organ, stains

    def for_organ(self, organ: str) -> DabMembraneScorer:
        """The same scorer applying the completeness definition of ``organ``'s guideline."""
        if organ == self.params.organ:
            return self
        return DabMembraneScorer(replace(self.params, organ=organ))

    def for_slide(self, rgb_sample: np.ndarray,
                  tissue_mask: np.ndarray | None = None) -> DabMembraneScorer:
        """A copy with the background and the haematoxylin and DAB vectors estimated from
        this slide's pixels.

        ``rgb_sample``: uint8 RGB pixels of the slide (a low-resolution view or a stack of
        tiles, ``(..., 3)``); ``tissue_mask``: the same shape without the channel axis, to
        leave glass out. Each estimated vector is used only when it lies within
        ``max_stain_angle_deg`` of the default, and the DAB vector only when at least
        ``min_dab_fraction`` of the pixels carry DAB of at least ``weak_od``; otherwise (or
        without enough stained pixels) the default stays: a HER2 0 or faint 1+ slide has no DAB
        to estimate a vector from. Tiles read at the scoring resolution give a sharper
        estimate than a low-resolution thumbnail, whose pixels mix the two stains. A sample
        of more than ``STAIN_PIXELS`` pixels is thinned to every k-th pixel. The background
        (the colour of glass, :func:`.deconvolution.estimate_background`) is read from every
        pixel of the sample, glass included, and the vectors against it.
        """
        rgb = np.asarray(rgb_sample)[..., :3].reshape(-1, 3)
        background = estimate_background(rgb)  # glass, lumens and fat: before the mask
        if tissue_mask is not None:
            rgb = rgb[np.asarray(tissue_mask, bool).reshape(-1)]
        rgb = rgb[:: -(-len(rgb) // STAIN_PIXELS) or 1]  # every k-th pixel, at most the budget
        try:
            hem, dab = estimate_stain_matrix(np.ascontiguousarray(rgb, np.uint8),
                                             background=background)
        except ValueError as err:
            logger.info("stain vectors: keeping the defaults (%s)", err)
            if background == self.params.background:
                return self
            return DabMembraneScorer(replace(self.params, background=background))
        p = self.params
        _, d = deconvolve(rgb, stain_matrix(p.haematoxylin, p.dab), background)
        enough_dab = float((d >= p.weak_od).mean()) >= p.min_dab_fraction
        hem = hem if angle_deg(hem, DEFAULT_HAEMATOXYLIN) <= p.max_stain_angle_deg else p.haematoxylin
        plausible = enough_dab and angle_deg(dab, DEFAULT_DAB) <= p.max_stain_angle_deg
        dab = dab if plausible else p.dab
        if angle_deg(hem, dab) < p.max_stain_angle_deg:  # too close to tell apart
            hem, dab = p.haematoxylin, p.dab
        logger.info("stain vectors: haematoxylin %s, DAB %s; background %s", np.round(hem, 3),
                    np.round(dab, 3), np.round(background, 1))
        return DabMembraneScorer(replace(p, haematoxylin=hem, dab=dab, background=background))

    def _measure_parallel(self, tiles: np.ndarray) -> np.ndarray:
        """``measure`` over slices of the batch in threads (see :func:`over_slices`)."""
        parts = over_slices(len(tiles), lambda idx: measure(tiles[idx], self.params), "stain")
        return np.concatenate([feats for _, feats in parts])

    def describe(self) -> dict[str, Any]:
        """Model card: what the scorer measures, its thresholds and its limits."""
        return {
            "name": self.name,
            "kind": "rule-based (no weights)",
            "classes": list(self.classes),
            "input_size": self.input_size,
            "target_mpp": self.target_mpp,
            "feature_names": list(self.feature_names),
            "sha256": self.sha256,
            "thresholds": {**asdict(self.params), **self.params.stain_vectors()},
            "method": (
                "H-DAB colour deconvolution; membranes = DAB Hessian ridges binned weak/"
                "moderate/strong by DAB OD; completeness = stained tumour area enclosed by "
                "membrane rings; ASCO/CAP tile classes with logistic soft thresholds"
            ),
            "training_data": None,
            "intended_use": INTENDED_USE,
            "limits": LIMITS,
        }


#: the intended use on the weight-free scorers' cards
INTENDED_USE = (
    "Research use only; not for diagnosis. Scores HER2 IHC (DAB with a haematoxylin "
    "counterstain) of invasive breast carcinoma (ASCO/CAP 2018) and gastro-oesophageal "
    "adenocarcinoma (gastric rules) for a pathologist to review; its thresholds are not "
    "calibrated to a scanner or a laboratory."
)


def over_slices(n_tiles: int, work: Callable[[np.ndarray], T], name: str) -> list[tuple[int, T]]:
    """``work(indices)`` over consecutive slices of a batch of ``n_tiles`` tiles, in threads
    (numpy and scipy.ndimage release the GIL, so the cores share a batch); one slice in sync
    mode or for small batches. Returns (first tile index, result) per slice, in order."""
    from napari_her2.threads import sync_mode

    n_threads = min(os.cpu_count() or 1, MAX_THREADS, n_tiles // MIN_TILES_PER_THREAD)
    if n_threads < 2 or sync_mode():
        return [(0, work(np.arange(n_tiles)))]
    parts = np.array_split(np.arange(n_tiles), n_threads)
    with ThreadPoolExecutor(n_threads, thread_name_prefix=f"napari-her2-{name}") as pool:
        results = list(pool.map(work, parts))
    return [(int(idx[0]) if len(idx) else 0, r) for idx, r in zip(parts, results, strict=True)]
