"""``her2-train tiles``: cross-validate, train, evaluate and export a tile classifier.

Steps: tiles of every image (cached) -> K-fold or Monte-Carlo cross-validation over images
or groups (each fold's model early-stops on a validation split of its own training images,
never on its test fold) -> a final model on all images -> evaluation on the external folder
-> a re-parameterized safetensors checkpoint whose card carries the data, split, metrics
with 95% CIs, software version and intended use.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from napari_her2.models import (
    ModelCard,
    TorchTilePredictor,
    get_model,
    reparameterize_model,
    save_checkpoint,
)

from .calibration import FITTED_ON, calibrate, external_calibration, probs_at
from .config import TileTrainConfig
from .data import ImageTiles
from .evaluation import evaluate
from .labels import CLASSES
from .loop import FitResult, channel_stats, fit
from .plots import plot_confusions, plot_curves
from .runs import RunFolder, software
from .splits import ci95, holdout, kfold, monte_carlo

log = logging.getLogger(__name__)

WEAK_LABELS = ("Image-level labels were given to every tile of an image (weak tile labels); "
               "tiles of one image never appear in two splits.")
CV_KEYS = ("accuracy", "macro_f1", "kappa", "qwk")


@dataclass(frozen=True)
class TrainedTileModel:
    """A trained tile model in eval mode, its card (no sha256 yet) and its fit history."""

    model: torch.nn.Module
    card: ModelCard
    fit: FitResult


def stack(images: list[ImageTiles]) -> tuple[np.ndarray, np.ndarray]:
    """All tiles and labels of some images."""
    return (np.concatenate([t.tiles for t in images]),
            np.concatenate([t.labels for t in images]).astype(np.int64))


def base_card(config: TileTrainConfig, stats: tuple, **fields: Any) -> ModelCard:
    """The card of a tile model trained with ``config`` (fields override)."""
    spec = config.tiles
    return ModelCard(architecture=config.arch, classes=CLASSES,
                     arch_args=fields.pop("arch_args", {}), input_size=spec.tile_size,
                     target_mpp=spec.target_mpp, mean=stats[0], std=stats[1], **fields)


def train_model(images: list[ImageTiles], config: TileTrainConfig, state: Path | None,
                desc: str, progress: bool = True,
                stop_after: int | None = None) -> TrainedTileModel:
    """Train one tile model on ``images``; early stopping on a held-out group split."""
    tr, va = holdout([t.image.group for t in images], config.val_fraction, config.seed)
    if not config.recipe.early_stopping:
        tr, va = np.arange(len(images)), np.arange(0)
    train = stack([images[i] for i in tr])
    val = stack([images[i] for i in va]) if len(va) else None
    stats = channel_stats(train[0])
    torch.manual_seed(config.seed)
    model = get_model(config.arch, num_classes=len(CLASSES), **config.arch_args)
    key = json.dumps([config.to_dict(), [t.sha256 for t in images]], sort_keys=True,
                     default=str)
    result = fit(model, train, val, recipe=config.recipe, aug=config.augment,
                 epochs=config.epochs, stats=stats, seed=config.seed, device=config.torch_device(),
                 state_path=state, stop_after=stop_after, progress=progress, desc=desc,
                 state_key=hashlib.sha256(key.encode()).hexdigest())
    card = base_card(config, stats, arch_args=dict(getattr(model, "arch_args", {})))
    return TrainedTileModel(result.model, card, result)


def predict_images(trained: TrainedTileModel, images: list[ImageTiles],
                   device: str = "cpu") -> list[np.ndarray]:
    """Logits (N, C) of every image's tiles, as the plugin computes them (before any
    temperature: the card of a model in training has none)."""
    predictor = TorchTilePredictor(trained.model, trained.card, device)
    return [np.concatenate([predictor.logits(t.tiles[i:i + 256])[0]
                            for i in range(0, max(len(t), 1), 256)]) for t in images]


def tile_logits(logits: list[np.ndarray], images: list[ImageTiles]) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """All tiles' logits (N, C) and their (weak) labels (N,)."""
    return np.concatenate(logits), np.concatenate([t.labels for t in images]).astype(int)


def evaluate_images(trained: TrainedTileModel, images: list[ImageTiles],
                    seed: int = 0) -> dict[str, Any]:
    """Tile-level (weak labels) and image-level (mean tile probability) evaluation."""
    return evaluate_logits(predict_images(trained, images), images, seed)


def evaluate_logits(logits: list[np.ndarray], images: list[ImageTiles],
                    seed: int = 0) -> dict[str, Any]:
    """:func:`evaluate_images` from the tiles' logits (softmax at T = 1)."""
    preds = [probs_at(z).astype(np.float32) for z in logits]
    tile_probs = np.concatenate(preds)
    tile_true = np.concatenate([t.labels for t in images])
    image_probs = np.stack([p.mean(axis=0) for p in preds])
    image_true = np.array([t.image.label for t in images])
    labelled = image_true >= 0
    return {
        "tile": evaluate(tile_true, tile_probs.argmax(1), tile_probs, seed),
        "image": evaluate(image_true[labelled], image_probs[labelled].argmax(1),
                          image_probs[labelled], seed),
        "images": [{"file": str(t.image.path), "label": CLASSES[t.image.label]
                    if t.image.label >= 0 else None,
                    "pred": CLASSES[int(p.argmax())], "probs": p.round(4).tolist()}
                   for t, p in zip(images, image_probs, strict=True)],
    }


def splits_for(images: list[ImageTiles], config: TileTrainConfig) -> list[tuple]:
    labels = [max(t.image.label, 0) for t in images]
    groups = [t.image.group for t in images]
    if config.cv == "montecarlo":
        return monte_carlo(groups, config.folds, seed=config.seed)
    return kfold(labels, groups, config.folds, seed=config.seed)


def cv_summary(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and 95% CI (mean ± 1.96 sd/√K) of each headline figure over the folds."""
    return {level: {k: ci95([f[level][k] for f in folds]) for k in CV_KEYS}
            for level in ("tile", "image")}


def cross_validate(images: list[ImageTiles], config: TileTrainConfig, run: RunFolder,
                   progress: bool = True) -> tuple[dict[str, Any], dict[str, list]]:
    """Per-fold results, their summary and the temperature fitted on the out-of-fold
    tile logits (weak labels; :mod:`.calibration`); histories for the training-curve plot."""
    folds, histories, held_out = [], {}, []
    splits = splits_for(images, config)
    for k, (tr, te) in enumerate(splits):
        trained = train_model([images[i] for i in tr], config, run.state(f"fold{k}"),
                              f"fold {k + 1}/{len(splits)}", progress)
        test = [images[i] for i in te]
        logits = predict_images(trained, test)
        held_out.append(tile_logits(logits, test))
        result = evaluate_logits(logits, test, config.seed)
        result["train_images"] = [str(images[i].image.path) for i in tr]
        result["test_images"] = [str(images[i].image.path) for i in te]
        folds.append(result)
        histories[f"fold {k + 1}"] = trained.fit.history
        log.info("fold %d/%d: tile %s image %s", k + 1, len(splits),
                 _short(result["tile"]), _short(result["image"]))
    z, y = (np.concatenate(parts) for parts in zip(*held_out, strict=True))
    calibration = calibrate(z, y, fitted_on=f"{FITTED_ON}, tiles (weak image-level labels)")
    return {"scheme": config.cv, "k": len(splits), "folds": folds,
            "summary": cv_summary(folds), "calibration": calibration}, histories


def _short(result: dict[str, Any]) -> str:
    return ", ".join(f"{k} {result[k]:.3f}" for k in CV_KEYS if result.get(k) is not None)


def card_metrics(cv: dict[str, Any] | None, external: dict[str, Any] | None) -> dict[str, Any]:
    """The compact metrics a card carries: CV means with CIs, external headline figures."""
    out: dict[str, Any] = {}
    if cv is not None:
        out["cross_validation"] = {"scheme": cv["scheme"], "k": cv["k"], **cv["summary"]}
        if cv.get("calibration") is not None:
            out["calibration"] = cv["calibration"]
    if external is not None:
        out["external"] = {level: summary_only(external[level]) for level in ("tile", "image")}
    return out


def summary_only(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "agreement"}


def export(trained: TrainedTileModel, path: Path, **card_fields: Any) -> ModelCard:
    """Save the deploy (re-parameterized) model with its completed card."""
    deploy = reparameterize_model(trained.model)
    card = trained.card.replace(arch_args=dict(getattr(deploy, "arch_args",
                                                       trained.card.arch_args)), **card_fields)
    return save_checkpoint(path, deploy, card)


def write_plots(run: RunFolder, histories: dict[str, list], results: dict[str, Any]) -> None:
    plot_curves(histories, run.plot("training_curve.png"))
    for name, result in results.items():
        if result is not None:
            plot_confusions(result, run.plot(f"confusion_{name}.png"))



def run_tiles(images: list[ImageTiles], config: TileTrainConfig, run: RunFolder, *,
              external: list[ImageTiles] | None = None, name: str | None = None,
              training_data: str = "", progress: bool = True) -> dict[str, Any]:
    """Cross-validate (when ``config.folds`` >= 2), train the final model, evaluate it on
    ``external``, write plots, metrics.json and ``<name>.safetensors``; return the metrics."""
    cv, histories = (cross_validate(images, config, run, progress) if config.folds >= 2
                     else (None, {}))
    final = train_model(images, config, run.state("final"), "final", progress)
    histories["final"] = final.fit.history
    ext = None
    if external:
        ext_logits = predict_images(final, external)
        ext = evaluate_logits(ext_logits, external, config.seed)
        if cv is not None:
            cv["calibration"] = external_calibration(*tile_logits(ext_logits, external),
                                                     cv["calibration"])
    metrics = {"cross_validation": cv, "external": ext, "history": final.fit.history,
               "best_epoch": final.fit.best_epoch, "software": software()}
    run.write("metrics.json", metrics)
    write_plots(run, histories, {
        "external_tile": ext["tile"] if ext else None,
        "external_image": ext["image"] if ext else None,
        "cv_last_fold_image": cv["folds"][-1]["image"] if cv else None,
    })
    n_tiles = sum(len(t) for t in images)
    data = training_data or ", ".join(sorted({str(t.image.path.parent) for t in images}))
    split = (f"{cv['scheme']} cross-validation, K={cv['k']}, by image/group; "
             if cv else "no cross-validation; ") + "final model trained on all images"
    ckpt = run.root / f"{name or config.arch}.safetensors"
    card = export(final, ckpt, name=name or config.arch,
                  training_data=f"{data}: {len(images)} images, {n_tiles} tiles at "
                                f"{config.tiles.tile_size} px / {config.tiles.target_mpp:g} "
                                f"um/px. {WEAK_LABELS} Split: {split}.",
                  provenance=f"her2-train tiles (preset {config.preset}, seed {config.seed}, "
                             f"{config.epochs} epochs)",
                  metrics=card_metrics(cv, ext), software_version=software()["napari_her2"])
    metrics["checkpoint"] = {"path": str(ckpt), "sha256": card.sha256}
    run.write("metrics.json", metrics)
    return metrics
