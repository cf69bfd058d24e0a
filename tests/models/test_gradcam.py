"""Grad-CAM: shape and range on every CNN tile model, and a planted feature it must find."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_her2.models import ModelCard, get_model, grad_cam, reparameterize_model


def _tile(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("arch", "kwargs", "size"),
    [
        ("her2-resnet", {}, 64),
        ("repvgg-gct", {"widths": (8, 8, 16, 16, 32), "depths": (1, 2, 1, 1, 1)}, 48),
        ("resnet18", {"widths": (8, 8, 16, 16), "input_size": 32}, 40),
    ],
)
def test_grad_cam_shape_and_range(arch, kwargs, size, randomize):
    torch.manual_seed(0)
    model = randomize(get_model(arch, **kwargs)).train()
    cam = grad_cam(model, _tile(size))
    assert cam.shape == (size, size) and cam.dtype == np.float32
    assert 0.0 <= cam.min() and cam.max() <= 1.0
    assert model.training  # mode restored
    if arch.startswith("repvgg"):
        deployed = reparameterize_model(model)
        cam_d = grad_cam(deployed, _tile(size))
        assert np.abs(cam - cam_d).max() < 1e-3  # same network, same explanation


def test_grad_cam_resizes_with_card_and_returns_tile_resolution():
    torch.manual_seed(0)
    model = get_model("her2-resnet")
    card = ModelCard(
        architecture="her2-resnet",
        classes=("0", "1+", "2+", "3+"),
        input_size=64,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    cam = grad_cam(model, _tile(100), target_class=2, card=card)
    assert cam.shape == (100, 100)
    with pytest.raises(ValueError, match="target_class"):
        grad_cam(model, _tile(64), target_class=9)


def test_grad_cam_works_under_inference_mode_and_on_tensors():
    torch.manual_seed(0)
    model = get_model("her2-resnet")
    with torch.inference_mode():
        cam = grad_cam(model, torch.randn(3, 64, 64))
    assert cam.shape == (64, 64)


class _RedDetector(nn.Module):
    """Conv that responds to red pixels, ReLU, global average pooling, two-class head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[0, 0, 1, 1] = 1.0  # red
            self.conv.weight[0, 1, 1, 1] = -1.0  # minus green
            self.conv.weight[1, 1, 1, 1] = 1.0  # green
            self.head.weight.zero_()
            self.head.bias.zero_()
            self.head.weight[1, 0] = 1.0  # class 1 = "red present"
            self.head.weight[0, 1] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def test_grad_cam_highlights_planted_feature():
    tile = np.zeros((32, 32, 3), np.uint8)
    tile[..., 1] = 120  # green background
    tile[4:10, 20:28] = (255, 0, 0)  # red patch, top right
    cam = grad_cam(_RedDetector(), tile, target_class=1)
    inside = cam[4:10, 20:28].mean()
    outside = np.concatenate([cam[16:, :].ravel(), cam[:, :12].ravel()]).mean()
    assert inside > 0.8 and outside < 0.05
    assert np.unravel_index(cam.argmax(), cam.shape)[0] < 12
