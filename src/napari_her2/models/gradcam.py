"""Grad-CAM (Selvaraju et al. 2017; seed 003) for CNN tile models.

Feature maps A^k of a convolutional layer (by default the model's ``gradcam_layer()``, else
its last ``Conv2d``) are weighted by the spatial mean of the gradient of the target class
score with respect to them; the ReLU of the weighted sum, upsampled to the tile's size and
scaled to [0, 1], is the map. Needs gradients, so it runs outside ``inference_mode``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .card import ModelCard
from .layers import last_conv
from .preprocess import preprocess


def default_layer(model: nn.Module) -> nn.Module:
    """The layer whose output Grad-CAM explains: ``model.gradcam_layer()`` or the last conv."""
    pick = getattr(model, "gradcam_layer", None)
    return pick() if callable(pick) else last_conv(model)


def _model_input(
    model: nn.Module, tile: np.ndarray | torch.Tensor, card: ModelCard | None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """(model input (1, C, H', W') on the model's device, the tile's own (H, W))."""
    device = next(model.parameters()).device
    if isinstance(tile, np.ndarray) or tile.dtype == torch.uint8:
        arr = tile.detach().cpu().numpy() if isinstance(tile, torch.Tensor) else np.asarray(tile)
        if arr.ndim != 3:
            raise ValueError(f"Grad-CAM takes one (H, W, 3) uint8 tile, got shape {arr.shape}")
        size = card.input_size if card is not None else None
        mean = card.mean if card is not None else (0.0, 0.0, 0.0)
        std = card.std if card is not None else (1.0, 1.0, 1.0)
        x = preprocess(arr, size, mean, std, device)
        return x, (arr.shape[0], arr.shape[1])
    x = tile.detach().to(device=device, dtype=torch.float32).clone()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"Grad-CAM takes one (C, H, W) float tensor, got shape {tuple(x.shape)}")
    return x, (x.shape[-2], x.shape[-1])


def grad_cam(
    model: nn.Module,
    tile: np.ndarray | torch.Tensor,
    target_class: int | None = None,
    layer: nn.Module | None = None,
    card: ModelCard | None = None,
) -> np.ndarray:
    """Grad-CAM map of one tile: float32 (H, W) in [0, 1] at the tile's input resolution.

    tile: uint8 (H, W, 3) RGB (resized/normalised as ``card`` says, if given), or a float
        (C, H, W)/(1, C, H, W) tensor that is already the model's input.
    target_class: class index to explain (default: the predicted class).
    layer: module whose output feature maps are used (default: :func:`default_layer`).
    The model's train/eval mode is restored afterwards; it is evaluated in eval mode.
    """
    layer = layer if layer is not None else default_layer(model)
    store: dict[str, Any] = {}

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        output.register_hook(lambda grad: store.__setitem__("grad", grad))
        store["act"] = output

    was_training = model.training
    handle = layer.register_forward_hook(hook)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            model.eval()
            x, (h, w) = _model_input(model, tile, card)
            x.requires_grad_(True)
            logits = model(x)
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                raise TypeError("Grad-CAM needs a tile classifier returning (N, C) logits")
            cls = int(logits[0].argmax()) if target_class is None else int(target_class)
            if not 0 <= cls < logits.shape[1]:
                raise ValueError(f"target_class {cls} out of range 0..{logits.shape[1] - 1}")
            logits[0, cls].backward()
    finally:
        handle.remove()
        model.train(was_training)
    if "act" not in store or "grad" not in store:
        raise RuntimeError("the chosen layer took no part in computing the class score")
    return _cam(store["act"].detach(), store["grad"].detach(), (h, w))


def _cam(act: torch.Tensor, grad: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * act).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam.float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    peak = cam.max()
    cam = cam / peak if peak > 0 else torch.zeros_like(cam)
    return cam.clamp_(0.0, 1.0).cpu().numpy().astype(np.float32)
