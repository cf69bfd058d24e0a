"""Gated attention-based multiple-instance learning (Ilse et al. 2018; seed 002, section 2).

A bag of K tiles becomes K embeddings h_k (from a registered tile backbone's
``forward_features``, or precomputed features of size ``in_features``), projected to
``embed_dim`` with a linear layer + ReLU. Gated attention scores them::

    a_k = softmax_k( w^T ( tanh(V h_k) * sigmoid(U h_k) ) )

(seed 002 eq. 1 is the ungated form ``w1^T tanh(w2 h_k)``, available with ``gated=False``).
The bag embedding ``z = sum_k a_k h_k`` goes through a linear classifier. The forward pass
returns :class:`MILOutput` with the logits and the attention weights explicitly.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn

from .registry import get_model, model_spec, register_model

SEED_002 = "seed 002 (Abdulsadig et al.), eq. 1; Ilse et al. 2018 (gated attention)"


class MILOutput(NamedTuple):
    """logits: (B, C) bag class logits; attention: (B, K) weights, each row sums to 1."""

    logits: torch.Tensor
    attention: torch.Tensor


@runtime_checkable
class TileBackbone(Protocol):
    """What ABMIL needs of a tile model built by ``get_model``: pooled features, their
    size, and the constructor arguments it was built with."""

    num_features: int
    arch_args: dict[str, Any]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) tiles -> (N, num_features) pooled features."""
        ...


class GatedAttention(nn.Module):
    """Attention pooling weights: one score per instance, softmax over the bag."""

    def __init__(self, dim: int, attn_dim: int, gated: bool = True) -> None:
        super().__init__()
        self.value = nn.Linear(dim, attn_dim)
        self.gate = nn.Linear(dim, attn_dim) if gated else None
        self.score = nn.Linear(attn_dim, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """h: (B, K, D); mask: (B, K) True for real instances. Returns (B, K) weights."""
        a = torch.tanh(self.value(h))
        if self.gate is not None:
            a = a * torch.sigmoid(self.gate(h))
        scores = self.score(a).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=-1)


class ABMIL(nn.Module):
    """Bag of tiles (or of tile features) -> gated attention pooling -> bag class logits."""

    backbone: TileBackbone | None

    def __init__(
        self,
        num_classes: int = 4,
        in_features: int | None = 512,
        backbone: str | None = None,
        backbone_args: dict[str, Any] | None = None,
        embed_dim: int = 256,
        attn_dim: int = 128,
        dropout: float = 0.25,
        gated: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = self._build_backbone(backbone, backbone_args)
        if self.backbone is not None:
            in_features = int(self.backbone.num_features)
        if in_features is None or int(in_features) <= 0:
            raise ValueError("abmil needs in_features > 0 or a tile backbone")
        self.in_features = int(in_features)
        self.embed = nn.Sequential(
            nn.Linear(self.in_features, embed_dim), nn.ReLU(), nn.Dropout(dropout)
        )
        self.attention = GatedAttention(embed_dim, attn_dim, gated)
        self.num_classes = int(num_classes)
        self.head = nn.Linear(embed_dim, self.num_classes)

    @staticmethod
    def _build_backbone(name: str | None, args: dict[str, Any] | None) -> TileBackbone | None:
        if name is None:
            if args:
                raise ValueError("backbone_args given without a backbone")
            return None
        if model_spec(name).kind != "tile":
            raise ValueError(f"abmil backbone must be a tile model, {name!r} is not")
        net = get_model(name, **(args or {}))
        if not isinstance(net, TileBackbone):
            raise ValueError(f"backbone {name!r} exposes no forward_features/num_features")
        return net

    def resolve_arch_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments with the backbone's full arguments (defaults included), so
        that re-parameterization can mark the backbone ``deploy=True`` in a checkpoint."""
        if self.backbone is None:
            return args
        return {**args, "backbone_args": dict(self.backbone.arch_args)}

    def instance_features(self, bag: torch.Tensor) -> torch.Tensor:
        """(B, K, ...) tiles or features -> (B, K, in_features)."""
        b, k = bag.shape[:2]
        if self.backbone is None:
            return bag
        feats = self.backbone.forward_features(bag.reshape(b * k, *bag.shape[2:]))
        return feats.reshape(b, k, -1)

    def forward(self, bag: torch.Tensor, mask: torch.Tensor | None = None) -> MILOutput:
        """bag: (K, ...) one bag or (B, K, ...) a batch of bags; ``...`` is (D,) for
        features or (3, H, W) for tiles with a backbone. mask: (B, K) True for real
        instances (padding in ragged batches); masked instances get zero attention."""
        single = bag.dim() == (2 if self.backbone is None else 4)
        if single:
            bag = bag.unsqueeze(0)
            mask = mask.unsqueeze(0) if mask is not None else None
        h = self.embed(self.instance_features(bag))
        attention = self.attention(h, mask)
        z = torch.einsum("bk,bkd->bd", attention, h)
        return MILOutput(self.head(z), attention)


@register_model("abmil", kind="mil", source=SEED_002)
def abmil(
    num_classes: int = 4,
    in_features: int | None = 512,
    backbone: str | None = None,
    backbone_args: dict[str, Any] | None = None,
    embed_dim: int = 256,
    attn_dim: int = 128,
    dropout: float = 0.25,
    gated: bool = True,
) -> ABMIL:
    """Gated attention MIL (seed 002): tile embeddings -> attention -> bag logits."""
    return ABMIL(
        num_classes, in_features, backbone, backbone_args, embed_dim, attn_dim, dropout, gated
    )
