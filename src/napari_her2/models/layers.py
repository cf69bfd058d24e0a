"""Small building blocks shared by the CNN architectures (plain torch, no torchvision)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConvBN(nn.Module):
    """Convolution without bias followed by batch normalisation ("same" padding)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_ch, out_ch, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ConvBNAct(ConvBN):
    """Convolution + batch normalisation + ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def as_int_tuple(values: Sequence[int] | int, length: int | None = None, what: str = "") -> tuple:
    """Tuple of positive ints (JSON gives lists back; constructors accept both)."""
    out = (int(values),) if isinstance(values, int) else tuple(int(v) for v in values)
    if any(v <= 0 for v in out):
        raise ValueError(f"{what or 'values'} must be positive integers, got {list(out)}")
    if length is not None and len(out) != length:
        raise ValueError(f"{what or 'values'} needs {length} entries, got {len(out)}")
    return out


def last_conv(model: nn.Module) -> nn.Conv2d:
    """The last ``nn.Conv2d`` registered in ``model`` (registration order)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer")
    return convs[-1]


def is_cnn(model: nn.Module) -> bool:
    """True when the model contains 2-D convolutions (so channels_last may help)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())
