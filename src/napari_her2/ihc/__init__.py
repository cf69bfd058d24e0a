"""Weight-free brightfield measurement of HER2 IHC: what the pixels say, no model weights.

- :mod:`.deconvolution`: optical density and H-DAB colour deconvolution, per-slide stain
  vectors;
- :mod:`.stain_check`: is the chromogen brown DAB at all;
- :mod:`.tissue`: the tissue mask on a low level;
- :mod:`.tumour`: tumour (epithelial) area from haematoxylin morphology, never from DAB;
- :mod:`.membrane`: per-tile membrane measurements and tile classes;
- :mod:`.scorer`: :class:`DabMembraneScorer`, the ``dab-membrane`` tile predictor.
"""

from __future__ import annotations

from .deconvolution import (
    DEFAULT_DAB,
    DEFAULT_HAEMATOXYLIN,
    deconvolve,
    estimate_stain_matrix,
    optical_density,
    stain_matrix,
)
from .membrane import CLASSES, FEATURE_NAMES, DabMembraneParams, classify, measure
from .scorer import DabMembraneScorer
from .stain_check import StainCheck, check_stain
from .tissue import TissueMask, TissueParams, detect_tissue, tissue_mask_from_rgb
from .tumour import TumourParams, tumour_mask

__all__ = [
    "CLASSES",
    "DEFAULT_DAB",
    "DEFAULT_HAEMATOXYLIN",
    "FEATURE_NAMES",
    "DabMembraneParams",
    "DabMembraneScorer",
    "StainCheck",
    "TissueMask",
    "TissueParams",
    "TumourParams",
    "check_stain",
    "classify",
    "deconvolve",
    "detect_tissue",
    "estimate_stain_matrix",
    "measure",
    "optical_density",
    "stain_matrix",
    "tissue_mask_from_rgb",
    "tumour_mask",
]
