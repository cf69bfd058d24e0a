"""The :class:`Encoder` every tile embedder is: uint8 RGB tiles in, float32 embeddings out
(loading and listing are in :mod:`.loading`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..preprocess import check_tiles, preprocess

#: tiles embedded at once inside :meth:`Encoder.embed` (bounds the memory of a large call)
EMBED_CHUNK = 64


@dataclass(frozen=True, eq=False)
class Encoder:
    """A tile encoder ready to run: uint8 RGB tiles in, float32 embeddings out.

    ``sha256`` names the weights (the weights file's bytes; a tile-model checkpoint's card
    hash); ``input_px`` and ``mpp`` are the tile the encoder expects (tiles of another size
    are resized to ``input_px``); ``mean``/``std`` normalise RGB scaled to [0, 1].
    """

    name: str
    sha256: str
    dim: int
    input_px: int
    mpp: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    licence: str
    kind: str = "foundation"
    device: str = "cpu"
    #: uint8 (N, input_px, input_px, 3), N >= 1 -> float32 (N, dim)
    run: Callable[[np.ndarray], np.ndarray] = field(default=lambda a: a, repr=False)

    def embed(self, tiles: np.ndarray) -> np.ndarray:
        """float32 (N, dim) embeddings of uint8 RGB tiles (N, H, W, 3) of any size."""
        arr = check_tiles(tiles)
        if arr.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        parts = [self.run(arr[i: i + EMBED_CHUNK]) for i in range(0, len(arr), EMBED_CHUNK)]
        out = np.concatenate(parts).astype(np.float32, copy=False)
        if out.shape != (arr.shape[0], self.dim):
            raise RuntimeError(f"{self.name}: gave {out.shape} for {arr.shape[0]} tiles, "
                               f"expected ({arr.shape[0]}, {self.dim})")
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "dim": self.dim,
                "input_px": self.input_px, "mpp": self.mpp, "mean": list(self.mean),
                "std": list(self.std), "licence": self.licence, "kind": self.kind}


def network_runner(forward: Callable[[torch.Tensor], torch.Tensor], input_px: int,
                   mean, std, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 tiles -> resized, normalised batch -> ``forward`` -> float32 numpy."""

    def run(arr: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = preprocess(arr, input_px, mean, std, device)
            return forward(x).float().cpu().numpy()

    return run
