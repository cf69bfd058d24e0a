"""HER2-ResNet: the 38-layer residual CNN of seed 000 (Wang et al. 2022, section 2.1, Fig. 1-2).

Layout (64x64 RGB input; shapes for the default arguments)::

    conv block   11x11 conv, 8  + BN + ReLU + 2x2 average pool        -> 8 x 32 x 32
    res block    identity residual unit(s), 7x7, 8 + 2x2 average pool -> 8 x 16 x 16
    res block    conv-shortcut residual unit, 5x5, 16
                 + identity residual unit(s), 5x5, 16 + 2x2 avg pool  -> 16 x 8 x 8
    conv block   3x3 conv, 32 + BN + ReLU + 2x2 average pool          -> 32 x 4 x 4
    head         flatten (512) -> dropout -> dense 512 -> classes

Where the paper is ambiguous, and what this module does (also in docs/models.md):

- Block numbering: section 2.1.1 puts the conv blocks "first and fourth" but gives their
  filters for the "second" (11x11, 8) and "fifth" (3x3, 32) blocks, and the residual blocks'
  filters for the "third" (7x7, 8) and "fourth" (5x5, 16); Fig. 1 counts the input as a
  block. Read in order: conv 11x11/8, residual 7x7/8, residual 5x5/16, conv 3x3/32.
- Fig. 2's caption swaps the two residual units (an identity shortcut cannot change size):
  the identity shortcut is used where input and output shapes agree, a 1x1 conv + BN
  shortcut where the channel count changes (8 -> 16).
- Pooling: 2x2 average pooling after every block. Four halvings of 64 give 4x4x32 = 512
  features, exactly the "512 inputs" of the dense layer, which fixes pool size and count.
  A final adaptive average pool to 4x4 (the identity at 64x64) keeps the dense layer at
  512 inputs for other tile sizes.
- Number of residual units (the "38 layers"): one identity unit in the 7x7 block, one conv
  unit + one identity unit in the 5x5 block. Counted as Keras lists layers (input, conv, BN,
  activation, pooling, add, flatten, dropout, dense, softmax) this is 38 layers.
- Residual unit: conv-BN-ReLU-conv-BN, plus the shortcut, then ReLU (He et al. 2016).
- Dropout probability: not given; 0.5.
- Training: the paper says learning rate 1e-3 in section 2.2 but reports that only 1e-4
  converges (section 3.3); Adam, batch 30. That belongs to the training package.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import ConvBN, ConvBNAct, as_int_tuple
from .registry import register_model

SEED_000 = "seed 000 (Wang et al. 2022), section 2.1, Fig. 1-2"


class ResidualUnit(nn.Module):
    """Two k x k conv + BN layers with an identity or a 1x1 conv + BN shortcut, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_ch, out_ch, kernel_size)
        self.conv2 = ConvBN(out_ch, out_ch, kernel_size)
        self.shortcut = nn.Identity() if in_ch == out_ch else ConvBN(in_ch, out_ch, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


def _residual_block(in_ch: int, out_ch: int, kernel_size: int, units: int) -> nn.Sequential:
    layers: list[nn.Module] = [ResidualUnit(in_ch, out_ch, kernel_size)]
    layers += [ResidualUnit(out_ch, out_ch, kernel_size) for _ in range(units - 1)]
    layers.append(nn.AvgPool2d(2))
    return nn.Sequential(*layers)


class HER2ResNet(nn.Module):
    """Seed 000's network: conv block, two residual blocks, conv block, dropout, dense."""

    def __init__(
        self,
        num_classes: int = 4,
        widths: Sequence[int] = (8, 8, 16, 32),
        kernel_sizes: Sequence[int] = (11, 7, 5, 3),
        units: Sequence[int] = (1, 2),
        dropout: float = 0.5,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        w = as_int_tuple(widths, 4, "widths")
        k = as_int_tuple(kernel_sizes, 4, "kernel_sizes")
        u = as_int_tuple(units, 2, "units")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.block1 = nn.Sequential(ConvBNAct(int(in_channels), w[0], k[0]), nn.AvgPool2d(2))
        self.block2 = _residual_block(w[0], w[1], k[1], u[0])
        self.block3 = _residual_block(w[1], w[2], k[2], u[1])
        self.block4 = nn.Sequential(ConvBNAct(w[2], w[3], k[3]), nn.AvgPool2d(2))
        self.grid = nn.AdaptiveAvgPool2d(4)
        self.dropout = nn.Dropout(float(dropout))
        self.num_features = w[3] * 16
        self.num_classes = int(num_classes)
        self.head = nn.Linear(self.num_features, self.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened 4x4 feature grid (N, 512 for the default widths), before dropout."""
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return torch.flatten(self.grid(x), 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Dropout + dense layer: class logits."""
        return self.head(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def gradcam_layer(self) -> nn.Module:
        """The last conv + BN + ReLU (3x3, 32 filters; 8x8 maps for a 64x64 tile)."""
        return self.block4[0]


@register_model("her2-resnet", source=SEED_000)
def her2_resnet(
    num_classes: int = 4,
    widths: Sequence[int] = (8, 8, 16, 32),
    kernel_sizes: Sequence[int] = (11, 7, 5, 3),
    units: Sequence[int] = (1, 2),
    dropout: float = 0.5,
    in_channels: int = 3,
) -> HER2ResNet:
    """HER2-ResNet (seed 000): 38-layer residual CNN for 64x64 HER2 IHC patches."""
    return HER2ResNet(num_classes, widths, kernel_sizes, units, dropout, in_channels)
