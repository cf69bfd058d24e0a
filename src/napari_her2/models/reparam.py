"""Structural re-parameterization (seed 001, section 3.1, equations 3-6).

A conv (kernel K, bias B_s) followed by batch normalisation (mean mu, std sigma, scale gamma,
shift beta) equals one conv with kernel ``K' = K gamma / sigma`` (eq. 4) and bias
``B'_s = (B_s - mu) gamma / sigma + beta`` (eq. 5). A 1x1 kernel becomes a 3x3 kernel with its
value at the centre, an identity branch a 3x3 kernel with 1 at the centre of channel i -> i;
the fused kernels and biases of all branches then add up (element-wise) to one 3x3 conv.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .registry import record_arch

logger = logging.getLogger(__name__)


def fuse_bn(
    kernel: torch.Tensor, bn: nn.BatchNorm2d, conv_bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Equations 4-5: fold a BN layer (in eval form) into the preceding conv's kernel and bias."""
    mean, var = _running_stats(bn)
    std = torch.sqrt(var + bn.eps)
    scale = bn.weight / std
    bias_in = conv_bias if conv_bias is not None else torch.zeros_like(mean)
    fused_kernel = kernel * scale.reshape(-1, 1, 1, 1)
    fused_bias = (bias_in - mean) * scale + bn.bias
    return fused_kernel, fused_bias


def _running_stats(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(running mean, running variance) of a BN layer; ValueError when it keeps none."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fuse a batch norm layer that keeps no running statistics")
    return bn.running_mean, bn.running_var


def pad_to_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a (small, odd) kernel so its values sit at the centre of a size x size kernel."""
    k = kernel.shape[-1]
    if k == size:
        return kernel
    pad = (size - k) // 2
    return F.pad(kernel, [pad, pad, pad, pad])


def identity_kernel(channels: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """Kernel of a conv that returns its input: 1 at the centre of channel i -> i, else 0."""
    kernel = torch.zeros(channels, channels, size, size, dtype=like.dtype, device=like.device)
    idx = torch.arange(channels, device=like.device)
    kernel[idx, idx, size // 2, size // 2] = 1.0
    return kernel


def supports_reparameterization(model: nn.Module) -> bool:
    """True when some block of ``model`` has a training form that can be fused."""
    return any(callable(getattr(m, "reparameterize", None)) for m in model.modules())


def is_deploy(model: nn.Module) -> bool:
    """True when every re-parameterizable block of ``model`` is already fused."""
    return all(
        getattr(m, "deploy", True)
        for m in model.modules()
        if callable(getattr(m, "reparameterize", None))
    )


def _mark_deploy(args: dict[str, Any]) -> dict[str, Any]:
    """Set every ``deploy`` constructor argument (nested ones included) to True."""
    out: dict[str, Any] = {}
    for key, value in args.items():
        if key == "deploy":
            out[key] = True
        elif isinstance(value, dict):
            out[key] = _mark_deploy(value)
        else:
            out[key] = value
    return out


@torch.no_grad()
def reparameterize_model(model: nn.Module) -> nn.Module:
    """A NEW model in deploy form: each re-parameterizable block becomes one 3x3 conv + bias.

    The input model is deep-copied and left untouched (it may stay in training). The copy is
    put in eval mode (fusion uses the BN running statistics). Its recorded constructor
    arguments get ``deploy=True`` so a checkpoint of it rebuilds directly in deploy form.
    Calling it on a model that is already in deploy form returns an equal copy.
    """
    deployed = copy.deepcopy(model)
    deployed.eval()
    n = 0
    for module in deployed.modules():
        fuse = getattr(module, "reparameterize", None)
        if callable(fuse) and not getattr(module, "deploy", False):
            fuse()
            n += 1
    name, args = getattr(deployed, "arch_name", None), getattr(deployed, "arch_args", None)
    if isinstance(name, str) and isinstance(args, dict):
        record_arch(deployed, name, _mark_deploy(args))
    logger.debug("re-parameterized %d blocks of %s", n, type(model).__name__)
    return deployed
