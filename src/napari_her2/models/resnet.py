"""ResNet-18 in plain torch (He et al. 2016; used by seeds 003 and 004).

The standard layout: 7x7/2 stem conv + BN + ReLU + 3x3/2 max pool, four stages of two basic
blocks (64, 128, 256, 512 channels; stride 2 at the start of stages 2-4 with a 1x1 conv + BN
shortcut), global average pooling and a linear classifier. Global pooling makes it work for
any input size; ``input_size`` only records the tile size the model is meant for (seed 003
resizes its 1024x1024 patches to 224x224). No pretrained weights are available here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import ConvBN, ConvBNAct, as_int_tuple
from .registry import register_model

SEED_003 = "seed 003 (ResNet18 on BCI, Grad-CAM) and seed 004 (ResNet-18 on BreakHis)"


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity or 1x1 conv + BN shortcut, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_ch, out_ch, 3, stride)
        self.conv2 = ConvBN(out_ch, out_ch, 3)
        needs_proj = stride != 1 or in_ch != out_ch
        self.shortcut = ConvBN(in_ch, out_ch, 1, stride) if needs_proj else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with basic blocks; ``depths=(2, 2, 2, 2)`` is ResNet-18."""

    #: tile side (pixels) the model is meant for, set by :func:`resnet18`
    input_size: int

    def __init__(
        self,
        num_classes: int = 4,
        widths: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (2, 2, 2, 2),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        widths = as_int_tuple(widths, 4, "widths")
        depths = as_int_tuple(depths, 4, "depths")
        self.stem = nn.Sequential(
            ConvBNAct(int(in_channels), widths[0], 7, 2), nn.MaxPool2d(3, 2, 1)
        )
        stages, in_ch = [], widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(in_ch, width, stride)]
            blocks += [BasicBlock(width, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_ch
        self.num_classes = int(num_classes)
        self.head = nn.Linear(in_ch, self.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled features (N, 512 for ResNet-18)."""
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from :meth:`forward_features`."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def gradcam_layer(self) -> nn.Module:
        """The last stage (its output is the last convolutional feature map)."""
        return self.stages[-1]


@register_model("resnet18", source=SEED_003)
def resnet18(
    num_classes: int = 4,
    input_size: int = 224,
    widths: Sequence[int] = (64, 128, 256, 512),
    in_channels: int = 3,
) -> ResNet:
    """ResNet-18 tile classifier in plain torch (seeds 003/004), any input size."""
    if int(input_size) < 32:
        raise ValueError(f"input_size must be at least 32 pixels, got {input_size}")
    model = ResNet(num_classes, widths, (2, 2, 2, 2), in_channels)
    model.input_size = int(input_size)
    return model
