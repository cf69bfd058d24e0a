"""The ``last`` training state of a run folder (model, optimiser, scheduler, RNG, epoch).

It is written with ``torch.save`` (atomically) and read back with ``weights_only=True``, so
loading it never runs code. It is a working file of the run, not a checkpoint: checkpoints
are napari-her2 safetensors files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import TrainError


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, Any]:
    """Read a state written by :func:`save_state` (tensors and plain values only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as err:
        raise TrainError(f"{path}: cannot resume from this state file ({err})") from None
