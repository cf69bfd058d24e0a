"""``her2-train mil``: gated attention MIL (seed 002) over a frozen tile model's embeddings,
or over the features of shared feature files (:mod:`her2_train.features_h5`).

Every epoch draws new bags (bag-level augmentation, seed 002): for each training image,
``bags_per_image`` bags of ``min(bag_size, N)`` of its tile embeddings, drawn without
replacement. Images are weighted by inverse class frequency in the loss. At inference a
slide is predicted by Monte-Carlo bag sampling: the mean of the bag probabilities of
``n_bags`` seeded bags, as napari-her2's slide scoring does it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from napari_her2.models import ModelCard, get_model, save_checkpoint
from torch import nn
from tqdm.auto import tqdm

from .calibration import external_calibration, probs_at
from .errors import TrainError
from .features_h5 import FeatureEncoder
from .image_level import ImageFeatures, TileModel, cross_validate, logits_of, predict_all
from .labels import CLASSES
from .state import load_state, save_state
from .threads import single_thread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MILConfig:
    """MIL training settings (written to config.json)."""

    bag_size: int = 100
    bags_per_image: int = 8
    epochs: int = 30
    lr: float = 2e-4
    weight_decay: float = 1e-4
    embed_dim: int = 128
    attn_dim: int = 64
    dropout: float = 0.25
    n_bags_eval: int = 64
    folds: int = 0
    cv: str = "kfold"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Inverse class frequency (classes absent from training get weight 0)."""
    counts = np.bincount(labels, minlength=len(CLASSES)).astype(float)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max(1, (counts > 0).sum()), 0)
    return torch.tensor(w, dtype=torch.float32)


def draw_bag(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """min(size, n) indices of n, without replacement."""
    return torch.randperm(n, generator=gen)[:min(size, n)]


def _epoch(model: nn.Module, opt: torch.optim.Optimizer, feats: list[ImageFeatures],
           emb: list[torch.Tensor], weights: torch.Tensor, cfg: MILConfig,
           gen: torch.Generator) -> float:
    model.train()
    order = torch.randperm(len(feats) * cfg.bags_per_image, generator=gen) % len(feats)
    losses = []
    for i in order.tolist():
        bag = emb[i][draw_bag(len(emb[i]), cfg.bag_size, gen)]
        target = torch.tensor([feats[i].image.label])
        loss = F.cross_entropy(model(bag).logits, target, weight=weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses))


def state_key(feats: list[ImageFeatures], cfg: MILConfig) -> str:
    """What a MIL state file was written for: the settings, and every image's name, label
    and embeddings (a digest); a state of another key is not resumed."""
    digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for f in feats:
        digest.update(f"{f.image.path.name}:{f.image.label}:{f.embeddings.shape}".encode())
        digest.update(np.ascontiguousarray(f.embeddings, np.float32).tobytes())
    return digest.hexdigest()


def train_mil(feats: list[ImageFeatures], cfg: MILConfig, state: Path | None = None,
              progress: bool = True, stop_after: int | None = None) -> nn.Module:
    """Train an ``abmil`` on bags resampled every epoch; resumable from ``state`` when it
    was written for the same settings and features (:func:`state_key`), refused otherwise."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = get_model("abmil", num_classes=len(CLASSES),
                      in_features=int(feats[0].embeddings.shape[1]), embed_dim=cfg.embed_dim,
                      attn_dim=cfg.attn_dim, dropout=cfg.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    epoch, history = 0, []
    key = state_key(feats, cfg)
    if state is not None and state.is_file():
        s = load_state(state)
        if s.get("key", "") != key:
            raise TrainError(f"{state}: written by other MIL settings or features; use a new "
                             "--out folder (or delete states/) to start afresh")
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["opt"])
        gen.set_state(s["gen"])
        torch.set_rng_state(s["rng"])
        epoch, history = s["epoch"], s["history"]
    emb = [torch.from_numpy(f.embeddings) for f in feats]
    weights = class_weights(np.array([f.image.label for f in feats]))
    bar = tqdm(total=cfg.epochs, initial=epoch, desc="mil", disable=not progress, leave=False)
    ran = 0
    while epoch < cfg.epochs and (stop_after is None or ran < stop_after):
        with single_thread():
            loss = _epoch(model, opt, feats, emb, weights, cfg, gen)
        epoch, ran = epoch + 1, ran + 1
        history.append({"epoch": epoch, "loss": loss})
        bar.update(1)
        bar.set_postfix(loss=round(loss, 4))
        if state is not None:
            save_state(state, {"model": model.state_dict(), "opt": opt.state_dict(),
                               "gen": gen.get_state(), "rng": torch.get_rng_state(),
                               "epoch": epoch, "history": history, "key": key})
    bar.close()
    model.history = history
    return model.eval()


def mc_logits(model: nn.Module, feat: ImageFeatures, n_bags: int = 64, bag_size: int = 100,
              seed: int = 0) -> np.ndarray:
    """(n_bags, C) logits of ``n_bags`` seeded bags of ``min(bag_size, N)`` tiles."""
    rng = np.random.default_rng(seed)
    n = len(feat.embeddings)
    k = min(bag_size, n)
    bags = np.stack([rng.choice(n, size=k, replace=False) for _ in range(n_bags)])
    emb = torch.from_numpy(feat.embeddings)
    with torch.inference_mode():
        logits = model.eval()(emb[torch.from_numpy(bags)]).logits
    return logits.double().numpy()


def mc_predict(model: nn.Module, feat: ImageFeatures, n_bags: int = 64, bag_size: int = 100,
               seed: int = 0, temperature: float = 1.0) -> np.ndarray:
    """(C,) mean class probabilities over ``n_bags`` seeded bags (Monte-Carlo MIL), each
    bag's softmax taken at ``temperature``."""
    return probs_at(mc_logits(model, feat, n_bags, bag_size, seed)[None], temperature)[0]


def _source_card(source: TileModel | FeatureEncoder) -> dict[str, Any]:
    """What the card says of the embeddings' source: the tile model (named in the
    description, as the plugin's pairing reads it), or the encoder (its ``encoder`` field)."""
    if isinstance(source, TileModel):
        return {"target_mpp": source.card.target_mpp,
                "description": f"Gated attention MIL over the embeddings of tile model "
                               f"{source.describe()}; use it with that tile model."}
    return {"target_mpp": source.mpp, "encoder": source.card_block(),
            "description": f"Gated attention MIL over the {source.dim}-d tile embeddings of "
                           f"encoder {source.name} (sha256 {source.sha256[:16]}), read from "
                           "feature files; use it with that encoder."}


def run_mil(feats: list[ImageFeatures], source: TileModel | FeatureEncoder, cfg: MILConfig,
            out: Path, *, external: list[ImageFeatures] | None = None, name: str = "abmil",
            training_data: str = "", progress: bool = True) -> dict[str, Any]:
    """CV (when cfg.folds >= 2), final model on all images, external test, checkpoint.

    source: the tile model whose embeddings ``feats`` hold, or the encoder of the feature
    files they were read from; the card names it."""
    def predict(model: nn.Module, f: ImageFeatures) -> np.ndarray:
        return mc_predict(model, f, cfg.n_bags_eval, cfg.bag_size, cfg.seed)

    def logits(model: nn.Module, f: ImageFeatures) -> np.ndarray:
        return mc_logits(model, f, cfg.n_bags_eval, cfg.bag_size, cfg.seed)

    def train(fs: list[ImageFeatures], state: Path | None) -> nn.Module:
        return train_mil(fs, cfg, state, progress)

    states = out / "states"
    cv = (cross_validate(feats, train, predict, folds=cfg.folds, scheme=cfg.cv, seed=cfg.seed,
                         state_dir=states, logits=logits) if cfg.folds >= 2 else None)
    final = train_mil(feats, cfg, states / "final" / "last.pt", progress)
    ext = predict_all(final, external, predict, cfg.seed) if external else None
    if cv is not None and external:
        cv["calibration"] = external_calibration(*logits_of(final, external, logits),
                                                 cv["calibration"])
    metrics = {"cross_validation": cv, "external": ext, "history": final.history}
    card = ModelCard(
        architecture="abmil", classes=CLASSES, arch_args=dict(final.arch_args), name=name,
        **_source_card(source),
        training_data=f"{training_data or 'labelled images'}: {len(feats)} images with "
                      "image-level labels; bags of tile embeddings resampled every epoch.",
        provenance=f"her2-train mil (bag size {cfg.bag_size}, {cfg.epochs} epochs, "
                   f"seed {cfg.seed})",
        metrics=slide_card_metrics(cv, ext))
    card = save_checkpoint(out / f"{name}.safetensors", final, card)
    metrics["checkpoint"] = {"path": str(out / f"{name}.safetensors"), "sha256": card.sha256}
    return metrics


def slide_card_metrics(cv: dict[str, Any] | None, ext: dict[str, Any] | None) -> dict[str, Any]:
    """Compact card metrics of a slide-level model (image level)."""
    out: dict[str, Any] = {}
    if cv is not None:
        out["cross_validation"] = {"scheme": cv["scheme"], "k": cv["k"], **cv["summary"]}
        if cv.get("calibration") is not None:
            out["calibration"] = cv["calibration"]
    if ext is not None:
        out["external"] = {k: v for k, v in ext.items() if k not in ("agreement", "images")}
    return out
