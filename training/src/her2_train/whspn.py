"""``her2-train whspn``: the WHSPN slide aggregator (seed 001) on tile-class fractions.

Each image becomes the vector of 0 / 1+ / 2+ / 3+ fractions of its tiles' arg-max classes
under a frozen tile model (tiles whose arg-max is not a HER2 score are left out, as the
plugin counts tumour tiles). ``whspn-mlp`` is trained full-batch with Adam and
inverse-frequency class weights; ``whspn-svm`` is scikit-learn's SVC (poly kernel, gamma 10,
C 2) stored as tensors.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from napari_her2.models import ModelCard, fit_whspn_svm, get_model, save_checkpoint
from torch import nn

from .calibration import NOT_CALIBRATED_SVM, external_calibration, probs_at
from .errors import TrainError
from .image_level import ImageFeatures, TileModel, cross_validate, logits_of, predict_all
from .labels import CLASSES
from .mil import class_weights, slide_card_metrics
from .threads import single_thread

log = logging.getLogger(__name__)

KINDS = ("mlp", "svm")


@dataclass(frozen=True)
class WHSPNConfig:
    """WHSPN settings (written to config.json)."""

    kind: str = "mlp"
    epochs: int = 500
    lr: float = 1e-2
    weight_decay: float = 1e-4
    folds: int = 0
    cv: str = "kfold"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TrainError(f"WHSPN kind must be one of {KINDS}, got {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fractions(probs: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """(4,) fractions of 0/1+/2+/3+ among tiles whose arg-max class is a HER2 score."""
    cls = np.asarray(classes)[probs.argmax(axis=1)]
    counts = np.array([np.count_nonzero(cls == c) for c in CLASSES], float)
    return counts / counts.sum() if counts.sum() else counts


def _xy(feats: list[ImageFeatures], classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([fractions(f.probs, classes) for f in feats]).astype(np.float32)
    return x, np.array([f.image.label for f in feats], np.int64)


def train_mlp(x: np.ndarray, y: np.ndarray, cfg: WHSPNConfig) -> nn.Module:
    """Full-batch Adam on the fraction vectors (seeded)."""
    torch.manual_seed(cfg.seed)
    model = get_model("whspn-mlp", num_classes=len(CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt, yt, w = torch.from_numpy(x), torch.from_numpy(y), class_weights(y)
    history = []
    with single_thread():
        for _ in range(cfg.epochs):
            loss = F.cross_entropy(model(xt), yt, weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
    model.history = [{"epoch": i + 1, "loss": v} for i, v in enumerate(history)]
    return model.eval()


def train_whspn(feats: list[ImageFeatures], classes: tuple[str, ...],
                cfg: WHSPNConfig) -> nn.Module:
    x, y = _xy(feats, classes)
    if cfg.kind == "svm":
        if len(np.unique(y)) < 2:
            raise TrainError("the WHSPN SVM needs images of at least two classes")
        return fit_whspn_svm(x, y, num_classes=len(CLASSES))
    return train_mlp(x, y, cfg)


def whspn_logits(model: nn.Module, feat: ImageFeatures, classes: tuple[str, ...]) -> np.ndarray:
    """(1, C) outputs of the model (the MLP: logits; the SVM: vote counts)."""
    x = torch.from_numpy(fractions(feat.probs, classes)[None].astype(np.float32))
    with torch.inference_mode():
        return model(x).double().numpy()


def predict_whspn(model: nn.Module, feat: ImageFeatures, classes: tuple[str, ...]) -> np.ndarray:
    """(C,) class probabilities (the SVM: a one-hot of its decision)."""
    out = whspn_logits(model, feat, classes)
    if getattr(model, "arch_name", "") == "whspn-svm":
        return np.eye(out.shape[1])[int(np.argmax(out[0]))]
    return probs_at(out)[0]


def run_whspn(feats: list[ImageFeatures], tile_model: TileModel, cfg: WHSPNConfig, out: Path,
              *, external: list[ImageFeatures] | None = None, name: str | None = None,
              training_data: str = "") -> dict[str, Any]:
    """CV (when cfg.folds >= 2), final model on all images, external test, checkpoint."""
    classes = tuple(tile_model.card.classes)
    name = name or f"whspn-{cfg.kind}"

    def train(fs: list[ImageFeatures], _state: Path | None) -> nn.Module:
        return train_whspn(fs, classes, cfg)

    def predict(model: nn.Module, f: ImageFeatures) -> np.ndarray:
        return predict_whspn(model, f, classes)

    def logits(model: nn.Module, f: ImageFeatures) -> np.ndarray:
        return whspn_logits(model, f, classes)

    cv = (cross_validate(feats, train, predict, folds=cfg.folds, scheme=cfg.cv, seed=cfg.seed,
                         state_dir=None, logits=logits if cfg.kind == "mlp" else None)
          if cfg.folds >= 2 else None)
    final = train(feats, None)
    ext = predict_all(final, external, predict, cfg.seed) if external else None
    if cv is not None and cfg.kind == "svm":
        log.info("whspn-svm: %s", NOT_CALIBRATED_SVM["note"])
        cv["calibration"] = dict(NOT_CALIBRATED_SVM)
    elif cv is not None and external:
        cv["calibration"] = external_calibration(*logits_of(final, external, logits),
                                                 cv["calibration"])
    x, _ = _xy(feats, classes)
    metrics = {"cross_validation": cv, "external": ext,
               "history": getattr(final, "history", []),
               "train_fractions": {f.image.path.name: v.round(4).tolist()
                                   for f, v in zip(feats, x, strict=True)}}
    card = ModelCard(
        architecture=f"whspn-{cfg.kind}", classes=CLASSES, arch_args=dict(final.arch_args),
        name=name,
        description=f"WHSPN over the tile-class fractions of tile model "
                    f"{tile_model.describe()}.",
        training_data=f"{training_data or 'labelled images'}: {len(feats)} images with "
                      "image-level labels.",
        provenance=f"her2-train whspn ({cfg.kind}, seed {cfg.seed})",
        metrics=slide_card_metrics(cv, ext))
    card = save_checkpoint(out / f"{name}.safetensors", final, card)
    metrics["checkpoint"] = {"path": str(out / f"{name}.safetensors"), "sha256": card.sha256}
    return metrics
