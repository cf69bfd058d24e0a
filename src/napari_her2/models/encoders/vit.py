"""The Vision Transformer family of the pathology foundation encoders, in plain torch.

Module and parameter names follow timm's ``VisionTransformer`` (``cls_token``, ``reg_token``,
``pos_embed``, ``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,
mlp.fc1,mlp.fc2,ls2.gamma}``, ``norm``), so that the ``state_dict`` of a timm checkpoint
(``pytorch_model.bin`` or ``model.safetensors``) loads with ``strict=True``. timm itself is not
needed: it imports torchvision, which does not install beside every torch build.

What the encoders differ in is a :class:`ViTConfig`: patch size, width, depth, heads, the MLP
(GELU or packed SwiGLU), register tokens, whether the position embeddings cover the class and
register tokens, LayerScale, and how the position embeddings are resampled for another grid.
:class:`ConchVisionTower` is CONCH v1.5's image tower (a ViT trunk and an attentional pooler).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: the output rules: the class token, the class token beside the mean of the patch tokens,
#: or an attentional pooler over all tokens (CONCH v1.5)
OUTPUT_RULES = ("cls", "cls+mean", "attn-pool")


@dataclass(frozen=True)
class ViTConfig:
    """The shape of one Vision Transformer.

    ``grid``: side of the patch grid the stored position embeddings cover (other input sizes
    resample them); ``no_embed_class``: the position embeddings cover the patches only (added
    before the class and register tokens are prepended); ``init_values``: LayerScale present
    (None: no LayerScale); ``swiglu``: packed SwiGLU MLP (``fc1`` gives both halves, SiLU gates
    the first) instead of GELU; ``mlp_hidden``: ``fc1``'s width when not ``int(dim *
    mlp_ratio)``; ``antialias_pos``: resample position embeddings with
    antialiasing (timm) or without (DINO, Hugging Face).
    """

    patch: int = 16
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    swiglu: bool = False
    reg_tokens: int = 0
    no_embed_class: bool = False
    init_values: float | None = None
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    antialias_pos: bool = True
    grid: int = 14
    mlp_hidden: int | None = None

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"width {self.dim} is not a multiple of {self.heads} heads")

    @property
    def prefix_tokens(self) -> int:
        """Class token plus register tokens."""
        return 1 + self.reg_tokens

    @property
    def pos_len(self) -> int:
        """Rows of ``pos_embed``."""
        return self.grid**2 + (0 if self.no_embed_class else self.prefix_tokens)

    @property
    def hidden(self) -> int:
        """Width of ``mlp.fc1``'s output (timm: ``int(dim * mlp_ratio)``)."""
        return self.mlp_hidden or int(self.dim * self.mlp_ratio)


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: one strided convolution."""

    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """Linear, GELU, linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PackedSwiGLU(nn.Module):
    """``fc1`` gives the gate and the value side by side; SiLU(gate) * value; ``fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden // 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(F.silu(gate) * value)


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg.dim, cfg.heads, cfg.qkv_bias)
        self.ls1 = _layer_scale(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        mlp = PackedSwiGLU if cfg.swiglu else Mlp
        self.mlp = mlp(cfg.dim, cfg.hidden)
        self.ls2 = _layer_scale(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def _layer_scale(cfg: ViTConfig) -> nn.Module:
    return LayerScale(cfg.dim, cfg.init_values) if cfg.init_values is not None else nn.Identity()


class VisionTransformer(nn.Module):
    """A ViT without a head: ``forward`` gives the normalised tokens (B, prefix + patches, D),
    class token first, then the register tokens, then the patches in row-major order."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.patch, cfg.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.reg_token = (nn.Parameter(torch.zeros(1, cfg.reg_tokens, cfg.dim))
                          if cfg.reg_tokens else None)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.pos_len, cfg.dim))
        self.blocks = nn.Sequential(*(Block(cfg) for _ in range(cfg.depth)))
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)

    def position_embeddings(self, rows: int, cols: int) -> torch.Tensor:
        """The position embeddings for a ``rows`` x ``cols`` patch grid: the stored ones, or
        their patch part resampled bicubically (the class/register part unchanged)."""
        cfg, pos = self.cfg, self.pos_embed
        if rows == cols == cfg.grid:
            return pos
        keep = 0 if cfg.no_embed_class else cfg.prefix_tokens
        grid = pos[:, keep:].reshape(1, cfg.grid, cfg.grid, cfg.dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(rows, cols), mode="bicubic",
                             align_corners=False, antialias=cfg.antialias_pos)
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, cfg.dim).to(pos.dtype)
        return torch.cat([pos[:, :keep], grid], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        b, _, rows, cols = x.shape
        x = x.flatten(2).transpose(1, 2)
        pos = self.position_embeddings(rows, cols)
        prefix = [self.cls_token.expand(b, -1, -1)]
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(b, -1, -1))
        if self.cfg.no_embed_class:
            x = torch.cat([*prefix, x + pos], dim=1)
        else:
            x = torch.cat([*prefix, x], dim=1) + pos
        return self.norm(self.blocks(x))


class AttentionalPooler(nn.Module):
    """Learned queries attend over the tokens (CONCH's contrastive pooler): layer-normed
    queries and tokens, bias-free projections, ``heads`` heads."""

    def __init__(self, dim: int, context_dim: int, heads: int = 8, queries: int = 1) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Parameter(torch.zeros(queries, dim))
        self.ln_k = nn.LayerNorm(context_dim)
        self.ln_q = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim, dim * 2, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, h = tokens.shape[0], self.heads
        k, v = self.to_kv(self.ln_k(tokens)).chunk(2, dim=-1)
        q = self.to_q(self.ln_q(self.query)).expand(b, -1, -1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], h, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.to_out(out.transpose(1, 2).reshape(b, q.shape[1], -1))


class ConchVisionTower(nn.Module):
    """CONCH v1.5's image tower: ViT trunk -> attentional pooler (one query) -> LayerNorm.
    Names as in its released ``pytorch_model_vision.bin`` (``trunk.*``,
    ``attn_pool_contrast.*``, ``ln_contrast.*``)."""

    def __init__(self, cfg: ViTConfig, out_dim: int = 768, pool_heads: int = 8) -> None:
        super().__init__()
        self.trunk = VisionTransformer(cfg)
        self.attn_pool_contrast = AttentionalPooler(out_dim, cfg.dim, pool_heads, queries=1)
        self.ln_contrast = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_contrast(self.attn_pool_contrast(self.trunk(x))[:, 0])


def pooled(tokens: torch.Tensor, rule: str, prefix_tokens: int) -> torch.Tensor:
    """The embedding a rule takes from the tokens of :class:`VisionTransformer`."""
    if rule == "cls":
        return tokens[:, 0]
    if rule == "cls+mean":
        return torch.cat([tokens[:, 0], tokens[:, prefix_tokens:].mean(dim=1)], dim=-1)
    raise ValueError(f"unknown output rule {rule!r}; one of {', '.join(OUTPUT_RULES[:2])}")
