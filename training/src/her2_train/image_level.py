"""Image-level learning shared by MIL and WHSPN: features from a frozen tile model, CV.

A tile checkpoint decides how tiles are cut (its card's input size and µm/px) and gives,
per image, the tile probabilities and embeddings exactly as the plugin computes them
(:class:`napari_her2.models.TorchTilePredictor`). They are cached per image, keyed by the
image's sha256 and the tile model's weights sha256.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from napari_her2.models import ModelCard, TorchTilePredictor, load_checkpoint

from .calibration import calibrate
from .data import ImageTiles, TileSpec, load_dataset
from .errors import DatasetError
from .evaluation import evaluate
from .labels import LabeledImage
from .splits import ci95, kfold, monte_carlo

log = logging.getLogger(__name__)

CV_KEYS = ("accuracy", "macro_f1", "kappa", "qwk")


@dataclass(frozen=True)
class ImageFeatures:
    """Per-image outputs of a tile model: probs (N, C) and embeddings (N, D)."""

    image: LabeledImage
    probs: np.ndarray
    embeddings: np.ndarray


@dataclass(frozen=True)
class TileModel:
    """A loaded tile checkpoint: predictor, card and the file it came from."""

    predictor: TorchTilePredictor
    card: ModelCard
    path: Path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> TileModel:
        model, card = load_checkpoint(path)
        return cls(TorchTilePredictor(model, card, device), card, Path(path))

    def spec(self, max_tiles: int, slide_mpp: float | None, min_tissue: float) -> TileSpec:
        """How tiles are cut for this model (its card's size and µm/px)."""
        if self.card.input_size is None or self.card.target_mpp is None:
            raise DatasetError(f"{self.path}: the card gives no input size or µm/px; "
                               "not a tile model")
        return TileSpec(tile_size=int(self.card.input_size), target_mpp=self.card.target_mpp,
                        min_tissue=min_tissue, max_tiles=max_tiles, slide_mpp=slide_mpp)

    def describe(self) -> str:
        return f"{self.card.name} ({self.card.architecture}, sha256 {self.card.sha256[:16]})"


def _predict(predictor: TorchTilePredictor, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    preds = [predictor.predict(tiles[i:i + 256]) for i in range(0, len(tiles), 256)]
    if any(p.embeddings is None for p in preds):
        raise DatasetError(f"{predictor.name}: the tile model gives no embeddings")
    return (np.concatenate([p.probs for p in preds]),
            np.concatenate([p.embeddings for p in preds]).astype(np.float32))


def image_features(tile_model: TileModel, images: list[ImageTiles],
                   cache: Path | None) -> list[ImageFeatures]:
    """Probabilities and embeddings of every image's tiles (cached per image)."""
    out = []
    for t in images:
        file = None
        if cache is not None:
            file = cache / f"emb_{t.sha256[:16]}_{tile_model.card.sha256[:16]}_{len(t)}.npz"
        if file is not None and file.is_file():
            with np.load(file) as z:
                probs, emb = z["probs"], z["embeddings"]
        else:
            probs, emb = _predict(tile_model.predictor, t.tiles)
            if file is not None:
                file.parent.mkdir(parents=True, exist_ok=True)
                np.savez(file, probs=probs, embeddings=emb)
        out.append(ImageFeatures(t.image, probs, emb))
    return out


def load_features(items: list[LabeledImage], tile_model: TileModel, cache: Path | None, *,
                  max_tiles: int, slide_mpp: float | None,
                  min_tissue: float = 0.5) -> list[ImageFeatures]:
    """Tiles (cut at the tile model's size/µm/px) -> per-image features; labelled images only."""
    labelled = [i for i in items if i.has_label]
    if not labelled:
        raise DatasetError("no image with an image-level label; slide models need them")
    spec = tile_model.spec(max_tiles, slide_mpp, min_tissue)
    return image_features(tile_model, load_dataset(labelled, spec, cache), cache)


Trainer = Callable[[list[ImageFeatures], Path | None], Any]
Predictor = Callable[[Any, ImageFeatures], np.ndarray]
#: (B, C) logits of one image (B bags for Monte-Carlo MIL, B = 1 otherwise)
Logits = Callable[[Any, ImageFeatures], np.ndarray]


def logits_of(model: Any, feats: list[ImageFeatures], logits: Logits) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """(N, B, C) logits of some images and their labels (N,)."""
    return (np.stack([logits(model, f) for f in feats]),
            np.array([f.image.label for f in feats], int))


def predict_all(model: Any, feats: list[ImageFeatures], predict: Predictor,
                seed: int = 0) -> dict[str, Any]:
    """Image-level evaluation of a slide model: metrics and per-image predictions."""
    probs = np.stack([predict(model, f) for f in feats])
    y = np.array([f.image.label for f in feats])
    result = evaluate(y, probs.argmax(1), probs, seed)
    result["images"] = [{"file": str(f.image.path), "label": int(f.image.label),
                         "probs": p.round(4).tolist()} for f, p in zip(feats, probs, strict=True)]
    return result


def cross_validate(feats: list[ImageFeatures], train: Trainer, predict: Predictor, *,
                   folds: int, scheme: str, seed: int, state_dir: Path | None,
                   logits: Logits | None = None) -> dict[str, Any]:
    """K-fold / Monte-Carlo CV over images (or groups): per-fold results and mean ± 95% CI.

    With ``logits``, a temperature is fitted on the out-of-fold logits of every image
    (:func:`her2_train.calibration.calibrate`) and returned as ``calibration``."""
    groups = [f.image.group for f in feats]
    labels = [f.image.label for f in feats]
    splits = (monte_carlo(groups, folds, seed=seed) if scheme == "montecarlo"
              else kfold(labels, groups, folds, seed=seed))
    results, held_out = [], []
    for k, (tr, te) in enumerate(splits):
        state = None if state_dir is None else state_dir / f"fold{k}" / "last.pt"
        model = train([feats[i] for i in tr], state)
        res = predict_all(model, [feats[i] for i in te], predict, seed)
        res["test_images"] = [str(feats[i].image.path) for i in te]
        results.append(res)
        if logits is not None:
            held_out.append(logits_of(model, [feats[i] for i in te], logits))
    summary = {k: ci95([r[k] for r in results]) for k in CV_KEYS}
    calibration = None
    if held_out:
        z, y = (np.concatenate(parts) for parts in zip(*held_out, strict=True))
        calibration = calibrate(z, y)
    return {"scheme": scheme, "k": len(splits), "folds": results, "summary": summary,
            "calibration": calibration}
