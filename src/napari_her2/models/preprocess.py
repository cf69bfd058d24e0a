"""Tile preprocessing shared by inference and Grad-CAM: uint8 RGB -> normalised float NCHW."""

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
    """uint8 (N, H, W, 3) -> float32 (N, 3, S, S): scale to [0, 1], resize to ``input_size``
    (bilinear with antialiasing; skipped when the size already matches or is None), then
    ``(x - mean) / std``."""
    if isinstance(tiles, torch.Tensor):
        tiles = tiles.detach().cpu().numpy()
    arr = check_tiles(tiles)
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(device)
    x = x.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    if input_size is not None and x.shape[-2:] != (input_size, input_size):
        x = F.interpolate(
            x, size=(input_size, input_size), mode="bilinear", antialias=True, align_corners=False
        )
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    x = (x - m) / s
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
