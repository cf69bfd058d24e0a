"""Seeded tile augmentation in plain torch: every draw comes from one ``torch.Generator``.

On a float batch (N, 3, H, W) in [0, 1]: random resized crop, flips and 90° rotations,
HED-space stain jitter (colour deconvolution with scikit-image's H-DAB matrix), HSV-style
jitter (hue rotation, saturation and value scaling), Gaussian blur and noise. Output has the
input's size; normalisation is done afterwards by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from skimage.color import hed_from_rgb, rgb_from_hed

_LOG_ADJUST = math.log(1e-6)  # scikit-image's rgb2hed scale


@dataclass(frozen=True)
class AugmentParams:
    """Strengths of each augmentation (0 turns one off)."""

    crop_scale: tuple[float, float] = (0.6, 1.0)
    flips: bool = True
    hed_sigma: float = 0.05
    hed_bias: float = 0.005  # scikit-image HED units (optical density / 13.8)
    hue: float = 0.04
    saturation: float = 0.2
    value: float = 0.15
    blur_p: float = 0.2
    noise_sd: float = 0.02


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def crop_flip_rotate(x: torch.Tensor, scale: tuple[float, float], flips: bool,
                     gen: torch.Generator) -> torch.Tensor:
    """Per tile: a square crop of a random area fraction in ``scale`` (random position),
    one of the 8 flips/90° rotations, resized back: one ``grid_sample`` for the batch."""
    n = x.shape[0]
    side = torch.sqrt(_uniform(n, *scale, gen)).to(x.dtype)
    centre = (torch.rand(n, 2, generator=gen, dtype=x.dtype) * 2 - 1) * (1 - side)[:, None]
    k = torch.randint(0, 4, (n,), generator=gen) if flips else torch.zeros(n, dtype=torch.long)
    f = (torch.rand(n, generator=gen) < 0.5) if flips else torch.zeros(n, dtype=torch.bool)
    angle = k.to(x.dtype) * (math.pi / 2)
    cos, sin = torch.cos(angle).round(), torch.sin(angle).round()
    mirror = torch.where(f, -1.0, 1.0).to(x.dtype)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = cos * side * mirror, -sin * side
    theta[:, 1, 0], theta[:, 1, 1] = sin * side * mirror, cos * side
    theta[:, :, 2] = centre
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def hed_jitter(x: torch.Tensor, sigma: float, bias: float, gen: torch.Generator) -> torch.Tensor:
    """Scale and shift haematoxylin, eosin and DAB concentrations per tile (Tellez et al.)."""
    n = x.shape[0]
    to_hed = torch.as_tensor(hed_from_rgb, dtype=x.dtype)
    to_rgb = torch.as_tensor(rgb_from_hed, dtype=x.dtype)
    od = torch.log(x.clamp_min(1e-6)) / _LOG_ADJUST  # (N, 3, H, W)
    hed = torch.einsum("nchw,cd->ndhw", od, to_hed)
    alpha = _uniform(3 * n, 1 - sigma, 1 + sigma, gen).reshape(n, 3, 1, 1)
    beta = _uniform(3 * n, -bias, bias, gen).reshape(n, 3, 1, 1)
    hed = hed * alpha + beta
    log_rgb = torch.einsum("ndhw,dc->nchw", hed * _LOG_ADJUST, to_rgb)
    return torch.exp(log_rgb).clamp(0, 1)


def hsv_jitter(x: torch.Tensor, hue: float, sat: float, val: float,
               gen: torch.Generator) -> torch.Tensor:
    """Hue rotation (about the grey axis), saturation and value scaling per tile."""
    n = x.shape[0]
    theta = _uniform(n, -hue, hue, gen) * 2 * math.pi
    s = _uniform(n, 1 - sat, 1 + sat, gen).reshape(n, 1, 1, 1)
    v = _uniform(n, 1 - val, 1 + val, gen).reshape(n, 1, 1, 1)
    grey = x.mean(dim=1, keepdim=True)
    chroma = x - grey
    # rotation about (1, 1, 1)/sqrt(3): Rodrigues' formula applied to the chroma vector
    axis = torch.full((3,), 1 / math.sqrt(3), dtype=x.dtype)
    cos, sin = torch.cos(theta).reshape(n, 1, 1, 1), torch.sin(theta).reshape(n, 1, 1, 1)
    cross = torch.cross(axis.reshape(1, 3, 1, 1).expand_as(chroma), chroma, dim=1)
    rotated = chroma * cos + cross * sin  # chroma is orthogonal to the axis
    return ((grey + rotated * s) * v).clamp(0, 1)


def blur_noise(x: torch.Tensor, blur_p: float, noise_sd: float,
               gen: torch.Generator) -> torch.Tensor:
    """Gaussian blur (sigma 0.5-1.0 px) on a ``blur_p`` share of tiles, then Gaussian noise
    (sd up to ``noise_sd``); one grouped convolution for the batch."""
    n, c, h, w = x.shape
    sigma = _uniform(n, 0.5, 1.0, gen).to(x.dtype)
    use = torch.rand(n, generator=gen) < blur_p
    r = torch.arange(-2, 3, dtype=x.dtype)
    k1 = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None] ** 2))
    k1 = torch.where(use[:, None], k1, (r == 0).to(x.dtype)[None])
    k1 = k1 / k1.sum(dim=1, keepdim=True)
    k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(c, dim=0)[:, None]
    padded = F.pad(x.reshape(1, n * c, h, w), (2, 2, 2, 2), mode="reflect")
    out = F.conv2d(padded, k2, groups=n * c).reshape(n, c, h, w)
    sd = _uniform(n, 0, noise_sd, gen).to(x.dtype).reshape(n, 1, 1, 1)
    noise = torch.randn(out.shape, generator=gen, dtype=x.dtype) * sd
    return (out + noise).clamp(0, 1)


def augment(x: torch.Tensor, params: AugmentParams, gen: torch.Generator) -> torch.Tensor:
    """All augmentations in a fixed order on a float (N, 3, H, W) batch in [0, 1]."""
    x = crop_flip_rotate(x, params.crop_scale, params.flips, gen)
    if params.hed_sigma or params.hed_bias:
        x = hed_jitter(x, params.hed_sigma, params.hed_bias, gen)
    if params.hue or params.saturation or params.value:
        x = hsv_jitter(x, params.hue, params.saturation, params.value, gen)
    if params.blur_p or params.noise_sd:
        x = blur_noise(x, params.blur_p, params.noise_sd, gen)
    return x
