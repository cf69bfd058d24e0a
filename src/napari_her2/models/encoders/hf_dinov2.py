"""Hugging Face ``Dinov2Model`` weights (Phikon-v2) under timm's names.

transformers keeps separate query/key/value projections and its own module names; the
mapping below renames every tensor and fuses q, k, v into timm's ``attn.qkv``. The mask token
(used only in training) is the one tensor left out; anything else that is not mapped is an
error, so a checkpoint of another kind is refused rather than half-loaded.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ...errors import CheckpointError

#: Hugging Face name (after ``encoder.layer.N.``) -> timm name (after ``blocks.N.``)
_LAYER_NAMES = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attention.output.dense": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "mlp.weights_in": "mlp.fc1",
    "mlp.weights_out": "mlp.fc2",
}
_TOP_NAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_UNUSED = {"embeddings.mask_token"}
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)$")
_QKV = re.compile(r"^attention\.attention\.(query|key|value)$")


def is_hf_dinov2(state: dict[str, torch.Tensor]) -> bool:
    """True when the tensors are named as transformers' Dinov2Model names them."""
    return any(k.removeprefix("dinov2.").startswith("embeddings.patch_embeddings") for k in state)


def to_timm(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The tensors of a Dinov2Model under timm's names; CheckpointError for a tensor that has
    no place (its name leads the message)."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for raw, tensor in state.items():
        key = raw.removeprefix("dinov2.")
        if key in _UNUSED:
            continue
        if key in _TOP_NAMES:
            out[_TOP_NAMES[key]] = tensor
            continue
        m = _LAYER.match(key)
        if m is None:
            raise CheckpointError(f"{source}: tensor {raw!r} is not part of a DINOv2 encoder")
        block, name, kind = int(m.group(1)), m.group(2), m.group(3)
        q = _QKV.match(name)
        if q is not None:
            qkv.setdefault((block, kind), {})[q.group(1)] = tensor
            continue
        full = f"{name}.{kind}"
        target = _LAYER_NAMES.get(full) or _LAYER_NAMES.get(name)
        if target is None:
            raise CheckpointError(f"{source}: tensor {raw!r} is not part of a DINOv2 encoder")
        suffix = "" if kind == "lambda1" else f".{kind}"
        out[f"blocks.{block}.{target}{suffix}"] = tensor
    for (block, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise CheckpointError(f"{source}: block {block} lacks part of its query/key/value "
                                  f"{kind}")
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0)
    return out


def config_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """ViTConfig fields from a transformers ``config.json`` of a Dinov2Model (the fields it
    gives; the position grid comes from the weights)."""
    if config.get("model_type") not in (None, "dinov2"):
        raise CheckpointError(f"config.json describes a {config.get('model_type')!r} model, "
                              "not a DINOv2 encoder")
    fields = {"hidden_size": "dim", "num_hidden_layers": "depth",
              "num_attention_heads": "heads", "patch_size": "patch", "mlp_ratio": "mlp_ratio",
              "layer_norm_eps": "norm_eps", "qkv_bias": "qkv_bias"}
    out = {ours: config[theirs] for theirs, ours in fields.items() if theirs in config}
    if config.get("use_swiglu_ffn"):
        out["swiglu"] = True
        dim = int(out.get("dim", 768))
        hidden = int(dim * float(out.get("mlp_ratio", 4)))
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8  # transformers' SwiGLU width
        out["mlp_hidden"] = 2 * hidden
    if config.get("hidden_act", "gelu") not in ("gelu",):
        raise CheckpointError(f"config.json: activation {config['hidden_act']!r} is not "
                              "supported (GELU or SwiGLU)")
    out["init_values"] = float(config.get("layerscale_value", 1.0))  # always present
    return out
