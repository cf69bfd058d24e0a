"""The tile-model checkpoints (shipped or the user's) as encoders.

A tile model's embedding is its penultimate features, the same numbers the pipeline stores
as ``TileResults.embeddings`` and the MIL models consume: the encoder runs the checkpoint's
:class:`~napari_her2.models.predictors.TorchTilePredictor` and keeps its embeddings. Its
``sha256`` is the checkpoint card's, its tile size and µm/px the card's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import CheckpointError, ModelNotFoundError
from ..catalog import available_predictors
from ..preprocess import resize_batch
from .encoder import Encoder
from .specs import SPECS

_LICENCE = "napari-her2's own checkpoint (BSD-3-Clause); research use only, not for diagnosis"


def _tile_checkpoint(name: str, models_dir: str | Path | None) -> Path:
    """The tile checkpoint a name means: a ``.safetensors`` path, a listed checkpoint's name,
    or the architecture of exactly one listed checkpoint (``her2-resnet`` -> the shipped
    ``her2-resnet-tma``)."""
    path = Path(name).expanduser()
    if path.suffix == ".safetensors" or len(path.parts) > 1 or path.is_file():
        if not path.is_file():
            raise ModelNotFoundError(f"encoder file not found: {path}")
        return path
    infos = [i for i in available_predictors(models_dir) if i.path is not None]
    for info in infos:
        if name in (info.name, info.card.get("name")):
            return Path(info.path)  # type: ignore[arg-type]
    same = [Path(i.path) for i in infos if i.card.get("architecture") == name]  # type: ignore[arg-type]
    if len(same) == 1:
        return same[0]
    names = [*SPECS, *(i.name for i in infos)]
    raise ModelNotFoundError(
        f"unknown encoder {name!r}: not a foundation encoder, a tile-model checkpoint or a "
        f"folder of weights; available: {', '.join(names)} (foundation encoders need the "
        "weights you download: see napari-her2 models)")


def tile_encoder(name_or_path: str, *, models_dir: str | Path | None = None,
                 device: str = "cpu") -> Encoder:
    """The encoder of a tile-model checkpoint (a name the catalog lists, the architecture of
    exactly one listed checkpoint, or a ``.safetensors`` path)."""
    from ..checkpoint import load_checkpoint
    from ..predictors import TorchTilePredictor

    path = _tile_checkpoint(name_or_path, models_dir)
    model, card = load_checkpoint(path)
    predictor = TorchTilePredictor(model, card, device)
    if card.input_size is None or card.target_mpp is None:
        raise CheckpointError(f"{path}: its model card gives no tile size or µm/px")
    size = int(card.input_size)
    n_features = int(getattr(predictor.model, "num_features", 0))
    if n_features <= 0:
        raise CheckpointError(f"{path}: {card.architecture} gives no penultimate features")

    def run(arr: np.ndarray) -> np.ndarray:
        _, emb = predictor.logits(resize_batch(arr, size))
        if emb is None:
            raise CheckpointError(f"{path}: {card.architecture} gave no embeddings")
        return emb

    return Encoder(card.name, card.sha256, n_features, size, float(card.target_mpp),
                   tuple(card.mean), tuple(card.std), _LICENCE, "tile-model",  # type: ignore[arg-type]
                   predictor.device.type, run)


def tile_encoder_infos(models_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The listed tile checkpoints as encoder entries (from their cards; no weights read)."""
    out = []
    for info in available_predictors(models_dir):
        if info.path is None:
            continue
        card = info.card
        out.append({"type": "encoder", "kind": "tile-model", "name": info.name,
                    "architecture": card.get("architecture"), "input_px": card.get("input_size"),
                    "mpp": card.get("target_mpp"), "mean": card.get("mean"),
                    "std": card.get("std"), "licence": _LICENCE, "weights_found": True,
                    "weights": str(info.path), "sha256": card.get("sha256")})
    return out
