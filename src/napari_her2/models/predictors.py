"""Inference adapter: a trained torch model + its card as a :class:`TilePredictor`.

:class:`TorchTilePredictor` is the thin torch boundary the inference loop, the widget and the
CLI call: uint8 RGB tiles in, softmax probabilities (at the card's calibration temperature)
and penultimate-layer embeddings out.
:func:`load_predictor` turns what a user types (``dab-membrane``, a checkpoint path, or the
name of a checkpoint in the models folder) into a predictor.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, DeviceError, ModelNotFoundError
from ..predict import Prediction, TilePredictor
from .calibration import softmax_at
from .card import ModelCard
from .catalog import (
    WEIGHT_FREE,
    WEIGHT_FREE_CELLS,
    PredictorInfo,
    available_predictors,
    checkpoint_files,
    describe_models,
    find_checkpoint,
    models_dir,
)
from .checkpoint import PICKLE_SUFFIXES, load_checkpoint
from .layers import is_cnn
from .preprocess import check_tiles, preprocess
from .registry import list_models, model_spec
from .reparam import is_deploy, reparameterize_model, supports_reparameterization

logger = logging.getLogger(__name__)

__all__ = [
    "PredictorInfo",
    "TorchTilePredictor",
    "available_predictors",
    "describe_models",
    "load_predictor",
    "models_dir",
    "resolve_checkpoint",
    "resolve_device",
]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: cuda if available, else mps, else cpu; otherwise the named device,
    which must be available (DeviceError otherwise)."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was asked for but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' was asked for but MPS is not available here")
    return dev


class TorchTilePredictor:
    """A tile classifier in deploy form, eval mode, on its device (implements TilePredictor).

    The predictor keeps its own copy of the model: re-parameterized when the architecture
    supports it, in ``channels_last`` memory format for CNNs. Tiles are
    normalised by the card's mean/std; they must already be ``card.input_size`` px at the
    card's µm/px (the pipeline cuts them so).
    """

    feature_names: tuple[str, ...] = ()

    def __init__(self, model: nn.Module, card: ModelCard, device: str | torch.device = "auto"):
        if card.input_size is None:
            raise CheckpointError(
                f"{card.name}: the model card gives no input_size; it is not a tile model"
            )
        if card.architecture in list_models() and model_spec(card.architecture).kind != "tile":
            raise CheckpointError(
                f"{card.name}: {card.architecture!r} is a "
                f"{model_spec(card.architecture).kind}-level model, "
                "not a tile model"
            )
        self.device = resolve_device(device)
        if supports_reparameterization(model) and not is_deploy(model):
            model = reparameterize_model(model)
        else:
            model = copy.deepcopy(model)
        self._channels_last = is_cnn(model)
        model = model.eval().to(self.device)
        if self._channels_last:
            # Module.to accepts memory_format (see its docstring); torch's overloads omit it
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model
        self.card = card
        self.name = card.name
        self.classes = tuple(card.classes)
        self.input_size = int(card.input_size)
        self.target_mpp = card.target_mpp
        self.sha256 = card.sha256
        #: calibration temperature the logits are divided by (None: plain softmax)
        self.temperature = card.temperature

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = getattr(self.model, "forward_features", None)
        head = getattr(self.model, "forward_head", None)
        if callable(features) and callable(head):
            emb = features(x)
            return head(emb), emb
        return self.model(x), None

    def _checked(self, tiles: np.ndarray) -> np.ndarray:
        """The tiles as uint8 (N, S, S, 3); a tile of another size than the card's is refused
        rather than silently resized (which would show the network another resolution than
        it was trained at)."""
        arr = check_tiles(tiles)
        if arr.shape[0] and arr.shape[1:3] != (self.input_size, self.input_size):
            raise ValueError(
                f"{self.name} takes {self.input_size}x{self.input_size} px tiles (its model "
                f"card), got {arr.shape[2]}x{arr.shape[1]}; cut them at the card's size and "
                "µm/px instead of resizing")
        return arr

    def _outputs(self, arr: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Float32 logits (N, C) before any temperature, and embeddings (N, D) or None."""
        with torch.inference_mode():
            x = preprocess(arr, self.input_size, self.card.mean, self.card.std, self.device,
                           self._channels_last)
            logits, emb = self._forward(x)
        return logits.float(), None if emb is None else emb.float()

    def logits(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw logits (N, C) of uint8 (N, S, S, 3) tiles, *before* the card's temperature,
        and their embeddings (N, D) or None (what calibration is fitted on)."""
        arr = self._checked(tiles)
        if arr.shape[0] == 0:
            return np.zeros((0, len(self.classes)), np.float32), None
        logits, emb = self._outputs(arr)
        return (logits.cpu().numpy().astype(np.float32),
                None if emb is None else emb.cpu().numpy())

    def predict(self, tiles: np.ndarray) -> Prediction:
        """Class probabilities (N, C) and embeddings (N, D) for uint8 (N, H, W, 3) tiles.

        The probabilities are softmax(logits / T) with the card's calibration temperature T
        (:mod:`napari_her2.models.calibration`), the plain softmax when the card has none.
        Tiles must be ``input_size`` pixels square, cut at the card's µm/px by the tile grid."""
        arr = self._checked(tiles)
        n = arr.shape[0]
        if n == 0:
            return Prediction(
                probs=np.zeros((0, len(self.classes)), np.float32),
                features=np.zeros((0, 0), np.float32),
            )
        logits, emb = self._outputs(arr)
        with torch.inference_mode():
            probs = softmax_at(logits, self.temperature, dim=1)
        return Prediction(
            probs=probs.cpu().numpy().astype(np.float32),
            features=np.zeros((n, 0), np.float32),
            embeddings=None if emb is None else emb.cpu().numpy(),
        )

    def describe(self) -> dict[str, Any]:
        """The model card as a JSON-able dict."""
        return self.card.to_dict()

    def __repr__(self) -> str:
        return (
            f"TorchTilePredictor(name={self.name!r}, arch={self.card.architecture!r}, "
            f"device={self.device.type!r})"
        )


def _looks_like_path(name: str) -> bool:
    p = Path(name)
    return p.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES) or len(p.parts) > 1 or p.is_file()


def _from_checkpoint(path: Path, device: str | torch.device) -> TilePredictor:
    model, card = load_checkpoint(path)
    return TorchTilePredictor(model, card, device)


def resolve_checkpoint(
    name_or_path: str | Path,
    models_dir: str | Path | None = None,
    *,
    what: str = "model",
    also: tuple[str, ...] = (),
) -> Path:
    """The checkpoint file a user means: a path, or a checkpoint name in the models folder.

    Raises :class:`ModelNotFoundError` for an architecture name without weights, or for an
    unknown name (listing ``also`` and the checkpoints found).
    """
    name = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(name):
        return Path(name_or_path)
    found = find_checkpoint(name, models_dir)
    if found is not None:
        return found
    if name in list_models():
        raise ModelNotFoundError(
            f"{name!r} is an architecture without trained weights, so it cannot score slides; "
            "train one with the napari-her2 training package, or pass a checkpoint "
            "(.safetensors file)"
        )
    names = [*also, *checkpoint_files(models_dir)]
    raise ModelNotFoundError(
        f"unknown {what} {name!r}; available: {', '.join(names) or 'none'} "
        "(or give the path of a .safetensors checkpoint)"
    )


def load_predictor(
    name_or_path: str | Path,
    device: str | torch.device = "auto",
    models_dir: str | Path | None = None,
) -> TilePredictor:
    """A ready tile predictor from ``dab-membrane``, a checkpoint path, or a checkpoint name.

    Raises :class:`ModelNotFoundError` for an architecture name without weights or an unknown
    name, and :class:`CheckpointError` for a checkpoint that is unsafe or does not match.
    """
    if str(name_or_path) == WEIGHT_FREE:
        from ..ihc.scorer import DabMembraneScorer

        return DabMembraneScorer()
    if str(name_or_path) == WEIGHT_FREE_CELLS:
        from ..ihc.cell_scorer import DabCellScorer

        return DabCellScorer()
    path = resolve_checkpoint(name_or_path, models_dir, also=(WEIGHT_FREE, WEIGHT_FREE_CELLS))
    return _from_checkpoint(path, device)
