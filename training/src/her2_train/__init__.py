"""her2-train: train napari-her2's tile classifiers, attention MIL and WHSPN models.

Datasets of labelled HER2 IHC images become tiles through napari-her2's own tissue and
tiling code; models come from its registry and are written as its safetensors checkpoints,
so everything trained here loads in the plugin. See ``training/README.md``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import DatasetError, LabelError, TrainError

__all__ = ["DatasetError", "LabelError", "TrainError", "__version__"]
