"""An encoder's network built from its spec and loaded strictly from its weights.

The stored position grid (and, for a Hugging Face snapshot, the fields of its
``config.json``) come from the weights; everything else from the spec. Loading is
``strict=True``: a missing, unexpected or differently shaped tensor is a one-line
:class:`~napari_her2.errors.CheckpointError` that names the first few.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ...errors import CheckpointError
from . import hf_dinov2
from .specs import EncoderSpec
from .vit import ConchVisionTower, VisionTransformer, ViTConfig, pooled

_SHOWN = 4


def _grid_of(spec: EncoderSpec, cfg: ViTConfig, pos: torch.Tensor | None, source: str) -> int:
    """The side of the patch grid the stored position embeddings cover."""
    if pos is None or pos.ndim != 3:
        raise CheckpointError(f"{source}: no position embeddings (pos_embed) for {spec.title}")
    n = pos.shape[1] - (0 if cfg.no_embed_class else cfg.prefix_tokens)
    side = math.isqrt(max(n, 0))
    if side * side != n or n == 0:
        raise CheckpointError(f"{source}: {pos.shape[1]} position embeddings do not fit a square "
                              f"grid for {spec.title} ({cfg.prefix_tokens} prefix tokens)")
    return side


def prepared(spec: EncoderSpec, state: dict[str, torch.Tensor], source: str,
             config: dict[str, Any] | None = None) -> tuple[ViTConfig, dict[str, torch.Tensor]]:
    """(architecture, tensors under our names) for ``spec``'s weights."""
    cfg = spec.vit
    if spec.layout == "hf-dinov2" or (spec.layout == "timm" and hf_dinov2.is_hf_dinov2(state)):
        if config is not None:
            cfg = replace(cfg, **hf_dinov2.config_overrides(config))
        state = hf_dinov2.to_timm(state, source)
    prefix = "trunk." if spec.layout == "conch" else ""
    grid = _grid_of(spec, cfg, state.get(f"{prefix}pos_embed"), source)
    return replace(cfg, grid=grid), state


def build_network(spec: EncoderSpec, state: dict[str, torch.Tensor], source: str,
                  config: dict[str, Any] | None = None) -> tuple[nn.Module, ViTConfig]:
    """The spec's network with the weights loaded strictly, in eval mode."""
    cfg, state = prepared(spec, state, source, config)
    with torch.device("meta"):
        net: nn.Module = (ConchVisionTower(cfg, spec.pool_dim) if spec.layout == "conch"
                          else VisionTransformer(cfg))
    load_strict(net, state, source, spec.title)
    return net.eval(), cfg


def load_strict(net: nn.Module, state: dict[str, torch.Tensor], source: str, title: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming what does not match."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for what, items in (("missing", missing), ("unexpected", unexpected),
                        ("shape", shapes)):
        if items:
            more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
            problems.append(f"{what}: {', '.join(items[:_SHOWN])}{more}")
    if problems:
        raise CheckpointError(f"{source}: the weights do not match the {title} architecture "
                              f"({'; '.join(problems)})")
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)


def output_dim(spec: EncoderSpec, cfg: ViTConfig) -> int:
    """Length of the embedding of the network actually built (a config.json may set the
    width)."""
    if spec.output == "attn-pool":
        return spec.pool_dim
    return cfg.dim * (2 if spec.output == "cls+mean" else 1)


def embedding_function(spec: EncoderSpec, net: nn.Module, cfg: ViTConfig):
    """The function from a normalised batch (B, 3, S, S) to embeddings (B, dim)."""
    if spec.output == "attn-pool":
        return net
    prefix = cfg.prefix_tokens

    def embed(x: torch.Tensor) -> torch.Tensor:
        return pooled(net(x), spec.output, prefix)

    return embed
