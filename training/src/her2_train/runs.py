"""The run folder: config.json, manifest.json, metrics.json, plots, checkpoint, states, cache."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import napari_her2
import torch

from . import __version__
from .errors import TrainError


def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


def software() -> dict[str, str]:
    """Versions that produced a run."""
    return {"her2_train": __version__, "napari_her2": napari_her2.__version__,
            "torch": torch.__version__, "python": sys.version.split()[0],
            "platform": platform.platform()}


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run; ``cache`` may be shared between runs (``--cache``)."""

    root: Path
    cache: Path

    @classmethod
    def create(cls, root: str | Path, cache: str | Path | None = None) -> RunFolder:
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            (root / "plots").mkdir(exist_ok=True)
        except OSError as err:
            raise TrainError(f"{root}: cannot create the run folder ({err.strerror})") from None
        return cls(root, Path(cache) if cache else root / "cache")

    def state(self, name: str) -> Path:
        """The ``last`` state file of one fit (a fold, or the final model)."""
        return self.root / "states" / name / "last.pt"

    def plot(self, name: str) -> Path:
        return self.root / "plots" / name

    def write(self, name: str, data: Any) -> Path:
        return write_json(self.root / name, data)
