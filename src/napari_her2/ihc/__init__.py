"""Weight-free brightfield measurement of HER2 IHC: what the pixels say, no model weights.

- :mod:`.deconvolution`: optical density and H-DAB colour deconvolution, per-slide stain
  vectors;
- :mod:`.stain_check`: is the chromogen brown DAB at all;
- :mod:`.tissue`: the tissue mask on a low level;
- :mod:`.tumour`: tumour (epithelial) area from haematoxylin morphology, never from DAB;
- :mod:`.membrane`: per-tile membrane measurements and tile classes;
- :mod:`.cells`: cell-level measurement (nuclei, cells, membrane rings, tumour cells, classes
  by the guideline and the magnification rule) and per-tile cell counts, with :mod:`.nuclei`
  (nuclei found, split and judged epithelial) and :mod:`.rings` (cell expansion and ring
  statistics);
- :mod:`.scorer`: :class:`DabMembraneScorer`, the ``dab-membrane`` tile predictor.
"""

from __future__ import annotations

from .cells import (
    CellBatch,
    CellParams,
    cell_counts,
    class_fractions,
    measure_cells,
    tile_classes,
)
from .deconvolution import (
    DEFAULT_DAB,
    DEFAULT_HAEMATOXYLIN,
    deconvolve,
    estimate_stain_matrix,
    optical_density,
    stain_matrix,
)
from .membrane import CLASSES, FEATURE_NAMES, DabMembraneParams, classify, measure
from .nuclei import NucleusParams
from .scorer import DabMembraneScorer
from .stain_check import StainCheck, check_stain
from .tissue import TissueMask, TissueParams, detect_tissue, tissue_mask_from_rgb
from .tumour import TumourParams, tumour_mask

__all__ = [
    "CLASSES",
    "CellBatch",
    "CellParams",
    "DEFAULT_DAB",
    "DEFAULT_HAEMATOXYLIN",
    "FEATURE_NAMES",
    "DabMembraneParams",
    "DabMembraneScorer",
    "NucleusParams",
    "StainCheck",
    "TissueMask",
    "TissueParams",
    "TumourParams",
    "cell_counts",
    "check_stain",
    "class_fractions",
    "classify",
    "deconvolve",
    "detect_tissue",
    "estimate_stain_matrix",
    "measure",
    "measure_cells",
    "optical_density",
    "stain_matrix",
    "tile_classes",
    "tissue_mask_from_rgb",
    "tumour_mask",
]
