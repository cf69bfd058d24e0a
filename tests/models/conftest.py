"""Shared fixtures of the model tests: small configurations, BN randomisation, a models folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

try:
    import napari_her2  # noqa: F401
except ModuleNotFoundError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from torch import nn  # noqa: E402

#: a RepVGG small enough for fast tests but with every block kind (stride 2, identity BN)
TINY_REPVGG = {"widths": (8, 8, 16, 16, 32), "depths": (1, 2, 2, 1, 1)}
#: ResNet-18 layout with narrow stages
TINY_RESNET = {"widths": (8, 16, 16, 32), "input_size": 32}


@torch.no_grad()
def randomize_norm_and_attention(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN random running statistics and affine parameters, and GCT/SE random
    parameters, so that a wrong fusion formula shows up in the outputs."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            uniform(m.running_mean, -0.3, 0.3)
            uniform(m.running_var, 0.5, 2.0)
            uniform(m.weight, 0.5, 1.5)
            uniform(m.bias, -0.3, 0.3)
        elif type(m).__name__ == "GCT":
            uniform(m.alpha, 0.5, 1.5)
            uniform(m.gamma, -1.0, 1.0)
            uniform(m.beta, -0.5, 0.5)
    return model


@torch.no_grad()
def calibrate_norm(model: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """Set BN running statistics from a forward pass over ``x`` (as training would), then
    perturb statistics and affine parameters at random: activations stay O(1) as in a
    trained network, while a wrong fusion formula still shows up."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration pass
    model.train()
    model(x)
    for bn in bns:
        c = bn.num_features
        bn.momentum = 0.1
        bn.running_mean.add_(0.05 * bn.running_var.sqrt() * torch.randn(c, generator=gen))
        bn.running_var.mul_(torch.rand(c, generator=gen) * 0.2 + 0.9)
        bn.weight.copy_(torch.rand(c, generator=gen) * 0.2 + 0.9)
        bn.bias.copy_((torch.rand(c, generator=gen) - 0.5) * 0.1)
    return model.eval()


@pytest.fixture
def calibrate():
    return calibrate_norm


@pytest.fixture
def tiny_repvgg() -> dict:
    return dict(TINY_REPVGG)


@pytest.fixture
def tiny_resnet() -> dict:
    return dict(TINY_RESNET)


@pytest.fixture
def randomize():
    return randomize_norm_and_attention


@pytest.fixture
def models_folder(tmp_path, monkeypatch) -> Path:
    """An empty user models folder, pointed to by NAPARI_HER2_MODELS."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("NAPARI_HER2_MODELS", str(folder))
    return folder
