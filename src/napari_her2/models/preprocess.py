"""Tile preprocessing shared by inference, Grad-CAM and the encoders: uint8 RGB -> normalised
float NCHW, and the one resize of uint8 tiles to a model's input size."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def check_tiles(tiles: np.ndarray) -> np.ndarray:
    """Validate a uint8 (N, H, W, 3) batch (a single (H, W, 3) tile becomes N=1)."""
    arr = np.asarray(tiles)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"tiles must be (N, H, W, 3) RGB, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"tiles must be uint8, got {arr.dtype}")
    return arr


def preprocess(
    tiles: np.ndarray | torch.Tensor,
    input_size: int | None,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device | str = "cpu",
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, S, S): ``(x / 255 - mean) / std``, resized to
    ``input_size`` (bilinear with antialiasing; skipped when the size already matches or is
    None).

    The tiles stay uint8 until here (a quarter of the bytes to move to the device); the
    conversion to float and the normalisation are one pass over the batch when no resize is
    needed. NHWC tiles viewed as NCHW are already channels-last, so a CNN gets them without
    another copy."""
    if isinstance(tiles, torch.Tensor):
        tiles = tiles.detach().cpu().numpy()
    arr = check_tiles(tiles)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, order="C")  # torch.from_numpy needs a writable, dense array
    x = torch.from_numpy(arr).to(device).permute(0, 3, 1, 2)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    if input_size is not None and x.shape[-2:] != (input_size, input_size):
        x = F.interpolate(x.to(torch.float32).div_(255.0), size=(input_size, input_size),
                          mode="bilinear", antialias=True, align_corners=False)
        x = x.sub_(m).div_(s)
    else:
        # (x / 255 - m) / s as one multiply-add on the converted copy
        x = torch.addcmul(-m / s, x.to(torch.float32), 1.0 / (255.0 * s))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=memory_format)


def resize_batch(regions: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 RGB regions (N, h, w, 3) to (N, size, size, 3) in one interpolation.

    Bilinear, with antialiasing (area-like averaging) when shrinking; the array is returned
    as it is when it already has the size. The interpolation runs on uint8 in channels-last
    layout (torch's fixed-point kernel, rounding to nearest); where this torch has no uint8
    kernel it runs in float32 and rounds, which agrees to within one grey level."""
    if regions.shape[1] == size and regions.shape[2] == size:
        return regions
    t = torch.from_numpy(np.ascontiguousarray(regions)).permute(0, 3, 1, 2)
    shrink = regions.shape[1] > size or regions.shape[2] > size

    def interpolate(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                             antialias=shrink)

    try:
        out = interpolate(t)
    except (RuntimeError, NotImplementedError):  # no uint8 kernel in this torch
        out = interpolate(t.float()).round_().clamp_(0, 255).to(torch.uint8)
    return np.ascontiguousarray(out.permute(0, 2, 3, 1).numpy())


def resize_tile(region: np.ndarray, size: int) -> np.ndarray:
    """Resize one RGB region to size x size: :func:`resize_batch` of a batch of one, so a
    tile comes out the same whether it is resized alone or in a batch."""
    if region.shape[0] == size and region.shape[1] == size:
        return region
    return resize_batch(np.ascontiguousarray(region)[None], size)[0]
