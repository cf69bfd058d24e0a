"""Training configuration: frozen dataclasses, the seeds' recipes as presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .augment import AugmentParams
from .data import TileSpec
from .errors import TrainError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant")
#: default tile side per architecture (seed 000: 64, seed 001: 256, seed 003: 224)
DEFAULT_TILE_SIZE = {"her2-resnet": 64, "repvgg-gct": 256, "repvgg-se": 256, "resnet18": 224}


@dataclass(frozen=True)
class Recipe:
    """Optimiser, schedule and loss settings of a training run."""

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    batch_size: int = 64
    schedule: str = "cosine"
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    balanced: bool = True
    early_stopping: bool = True
    patience: int = 5
    tile_size: int | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise TrainError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise TrainError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.lr <= 0 or self.batch_size < 1:
            raise TrainError("learning rate must be > 0 and batch size >= 1")


PRESETS: dict[str, Recipe] = {
    # modern default: AdamW, cosine with warm-up, label smoothing, balanced classes
    "default": Recipe(),
    # seed 000 (HER2-ResNet): Adam, learning rate 1e-4, batch 30, 64 px
    "seed000": Recipe(optimizer="adam", lr=1e-4, weight_decay=0.0, batch_size=30,
                      schedule="constant", warmup_epochs=0, label_smoothing=0.0,
                      balanced=False, early_stopping=False, tile_size=64),
    # seed 001 (RepVGG + WHSPN): SGD, learning rate 0.1, weight decay 1e-3, batch 256
    "seed001": Recipe(optimizer="sgd", lr=0.1, weight_decay=1e-3, batch_size=256,
                      schedule="cosine", warmup_epochs=1, label_smoothing=0.0,
                      balanced=False, early_stopping=False),
    # seed 003 (ResNet-18 on BCI): AdamW, learning rate 1e-3, 224 px
    "seed003": Recipe(optimizer="adamw", lr=1e-3, weight_decay=1e-2, batch_size=32,
                      schedule="cosine", warmup_epochs=1, label_smoothing=0.0,
                      balanced=False, early_stopping=False, tile_size=224),
}


def preset(name: str, **changes: Any) -> Recipe:
    """A preset recipe with some fields changed (None values are ignored)."""
    if name not in PRESETS:
        raise TrainError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **{k: v for k, v in changes.items()
                                                 if v is not None})


@dataclass(frozen=True)
class TileTrainConfig:
    """Everything that decides a tile-model training run (written to config.json)."""

    arch: str = "her2-resnet"
    arch_args: dict[str, Any] = field(default_factory=dict)
    preset: str = "default"
    recipe: Recipe = field(default_factory=Recipe)
    tiles: TileSpec = field(default_factory=TileSpec)
    augment: AugmentParams = field(default_factory=AugmentParams)
    epochs: int = 20
    folds: int = 0
    cv: str = "kfold"
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise TrainError(f"epochs must be >= 1, got {self.epochs}")
        if self.cv not in ("kfold", "montecarlo"):
            raise TrainError(f"cv must be kfold or montecarlo, got {self.cv!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def torch_device(self) -> str:
        """``auto``: cuda when available, else cpu; otherwise the named device."""
        return resolve_device(self.device)


def resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def tile_size_for(arch: str, recipe: Recipe, asked: int | None) -> int:
    """Tile side: asked > preset > the architecture's own size > 224."""
    return int(asked or recipe.tile_size or DEFAULT_TILE_SIZE.get(arch, 224))
