"""Tile, MIL and slide-level models of napari-her2: registry, checkpoints, inference, Grad-CAM.

Architectures (from the seed papers; see docs/models.md):

- ``her2-resnet`` (seed 000), ``repvgg-gct`` / ``repvgg-se`` (seed 001), ``resnet18``
  (seeds 003/004): tile classifiers;
- ``abmil`` (seed 002): gated attention multiple-instance learning;
- ``whspn-mlp`` / ``whspn-svm`` (seed 001): slide score from tile-class fractions.

The weight-free scorers, ``dab-cells`` (the default, :mod:`napari_her2.ihc.cell_scorer`) and
``dab-membrane`` (:mod:`napari_her2.ihc.scorer`), are reached through :func:`load_predictor`. This package has no Qt imports.
"""

from __future__ import annotations

from . import abmil as _abmil  # noqa: F401  (registers abmil)
from . import her2_resnet as _her2_resnet  # noqa: F401  (registers her2-resnet)
from . import repvgg as _repvgg  # noqa: F401  (registers repvgg-gct, repvgg-se)
from . import resnet as _resnet  # noqa: F401  (registers resnet18)
from . import whspn as _whspn  # noqa: F401  (registers whspn-mlp, whspn-svm)
from .abmil import MILOutput
from .card import ModelCard
from .catalog import (
    PredictorInfo,
    available_predictors,
    available_slide_models,
    describe_models,
    models_dir,
)
from .checkpoint import load_checkpoint, read_card, save_checkpoint
from .gradcam import grad_cam
from .predictors import TorchTilePredictor, load_predictor
from .registry import count_parameters, get_model, list_models, register_model
from .reparam import reparameterize_model
from .whspn import fit_whspn_svm

__all__ = [
    "MILOutput",
    "ModelCard",
    "PredictorInfo",
    "TorchTilePredictor",
    "available_predictors",
    "available_slide_models",
    "count_parameters",
    "describe_models",
    "fit_whspn_svm",
    "get_model",
    "grad_cam",
    "list_models",
    "load_checkpoint",
    "load_predictor",
    "models_dir",
    "read_card",
    "register_model",
    "reparameterize_model",
    "save_checkpoint",
]
