"""RepVGG-GCT and RepVGG-SE: the tile-level classification network of seed 001 (section 3.1).

Training form: every block is an *enhanced convolution module* (ECM) with three branches,
3x3 conv + BN, 1x1 conv + BN and (when input and output shapes agree) an identity BN; the
branch outputs are added, passed through a channel attention module (GCT or SE, "added to the
output of each enhanced convolution") and a ReLU. Deploy form: the three branches are fused
into one 3x3 conv with bias (:func:`napari_her2.models.reparam.reparameterize_model`,
equations 3-6); the attention module and the ReLU stay.

Choices where the paper is silent (see docs/models.md):

- Stage layout: the paper gives no widths or depths, only parameter counts and FLOPs
  (7.836 M -> 7.036 M parameters without attention, 7.849 M -> 7.049 M with GCT, 7.316 M with
  SE; 1.99 -> 1.78 GFLOPs at 256x256). The RepVGG-A0 layout matches all of them: widths
  (48, 48, 96, 192, 1280), depths (1, 2, 4, 14, 1), the first block of each stage with
  stride 2, then global average pooling and one linear layer.
- GCT (Yang et al. 2020) in its l2 form, with alpha=1, gamma=0, beta=0 at initialisation
  (the gate starts as the identity); SE with 1x1 convolutions and reduction 16 (these give
  the paper's +13 k and +280 k parameters).
- Order inside a block: sum of branches -> attention -> ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import ConvBN, as_int_tuple
from .registry import register_model
from .reparam import fuse_bn, identity_kernel, pad_to_kernel

SEED_001 = "seed 001 (Han et al. 2022), section 3.1 and Table 7"
A0_WIDTHS = (48, 48, 96, 192, 1280)
A0_DEPTHS = (1, 2, 4, 14, 1)
ATTENTIONS = ("gct", "se", "none")


class GCT(nn.Module):
    """Gated channel transformation (l2 embedding, channel normalisation, tanh gate)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sq_norm = torch.linalg.vector_norm(x, 2, dim=(2, 3), keepdim=True).square()
        embedding = (sq_norm + self.eps).sqrt() * self.alpha
        norm = self.gamma / (embedding.pow(2).mean(dim=1, keepdim=True) + self.eps).sqrt()
        gate = 1.0 + torch.tanh(embedding * norm + self.beta)
        return x * gate


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global pool -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.down = nn.Conv2d(channels, hidden, 1)
        self.up = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = torch.sigmoid(self.up(torch.relu(self.down(s))))
        return x * s


def make_attention(kind: str, channels: int) -> nn.Module:
    """Channel attention module by name: "gct", "se" or "none"."""
    if kind == "gct":
        return GCT(channels)
    if kind == "se":
        return SqueezeExcite(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"attention must be one of {ATTENTIONS}, not {kind!r}")


class RepVGGBlock(nn.Module):
    """Enhanced convolution module (3x3+BN, 1x1+BN, identity BN) + attention + ReLU.

    ``deploy=True`` builds the fused form directly (one 3x3 conv with bias), so deploy
    checkpoints load without the training branches. :meth:`reparameterize` converts a
    training-form block in place and is idempotent.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        attention: str = "gct",
        deploy: bool = False,
    ) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride
        self.deploy = deploy
        if deploy:
            self.fused = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=True)
        else:
            self.dense = ConvBN(in_ch, out_ch, 3, stride)
            self.pointwise = ConvBN(in_ch, out_ch, 1, stride)
            has_identity = in_ch == out_ch and stride == 1
            self.identity = nn.BatchNorm2d(out_ch) if has_identity else None
        self.attention = make_attention(attention, out_ch)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            y = self.fused(x)
        else:
            y = self.dense(x) + self.pointwise(x)
            if self.identity is not None:
                y = y + self.identity(x)
        return self.act(self.attention(y))

    @torch.no_grad()
    def fused_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of the single 3x3 conv equal to the three branches (eq. 3-6)."""
        if self.deploy:
            return self.fused.weight.detach().clone(), _bias(self.fused).detach().clone()
        k3, b3 = fuse_bn(self.dense.conv.weight, self.dense.bn)
        k1, b1 = fuse_bn(pad_to_kernel(self.pointwise.conv.weight, 3), self.pointwise.bn)
        kernel, bias = k3 + k1, b3 + b1
        if self.identity is not None:
            kid, bid = fuse_bn(identity_kernel(self.in_ch, 3, k3), self.identity)
            kernel, bias = kernel + kid, bias + bid
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fuse the branches into ``self.fused`` and delete them; a no-op when already fused."""
        if self.deploy:
            return
        kernel, bias = self.fused_kernel_bias()
        fused = nn.Conv2d(self.in_ch, self.out_ch, 3, self.stride, 1, bias=True)
        fused = fused.to(device=kernel.device, dtype=kernel.dtype)
        fused.weight.copy_(kernel)
        _bias(fused).copy_(bias)
        del self.dense, self.pointwise, self.identity
        self.fused = fused
        self.deploy = True


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """The bias of a conv built with ``bias=True`` (ValueError for one without)."""
    if conv.bias is None:
        raise ValueError("the fused conv of a RepVGG block has no bias")
    return conv.bias


class RepVGG(nn.Module):
    """Chain of RepVGG blocks in five stages, global average pooling, linear classifier."""

    def __init__(
        self,
        num_classes: int = 6,
        attention: str = "gct",
        widths: Sequence[int] = A0_WIDTHS,
        depths: Sequence[int] = A0_DEPTHS,
        in_channels: int = 3,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        widths = as_int_tuple(widths, 5, "widths")
        depths = as_int_tuple(depths, 5, "depths")
        stages, in_ch = [], int(in_channels)
        for width, depth in zip(widths, depths, strict=True):
            blocks = []
            for i in range(depth):
                stride = 2 if i == 0 else 1
                blocks.append(RepVGGBlock(in_ch, width, stride, attention, deploy))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(in_ch, int(num_classes))
        self.num_features = in_ch
        self.num_classes = int(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (N, num_features)."""
        return torch.flatten(self.pool(self.stages(x)), 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from :meth:`forward_features`."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def gradcam_layer(self) -> nn.Module:
        """The last block: its output is the last convolutional feature map."""
        return list(self.stages[-1].children())[-1]


@register_model("repvgg-gct", source=SEED_001)
def repvgg_gct(
    num_classes: int = 6,
    widths: Sequence[int] = A0_WIDTHS,
    depths: Sequence[int] = A0_DEPTHS,
    in_channels: int = 3,
    deploy: bool = False,
) -> RepVGG:
    """RepVGG-GCT tile classifier (seed 001): ECM blocks with GCT attention, 256x256 tiles."""
    return RepVGG(num_classes, "gct", widths, depths, in_channels, deploy)


@register_model("repvgg-se", source=SEED_001)
def repvgg_se(
    num_classes: int = 6,
    widths: Sequence[int] = A0_WIDTHS,
    depths: Sequence[int] = A0_DEPTHS,
    in_channels: int = 3,
    deploy: bool = False,
) -> RepVGG:
    """RepVGG-SE tile classifier (seed 001): ECM blocks with SE attention, 256x256 tiles."""
    return RepVGG(num_classes, "se", widths, depths, in_channels, deploy)
