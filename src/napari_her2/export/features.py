"""Tile features as HDF5 in the layout TRIDENT and CLAM write and MIL code reads.

One file per slide: dataset ``features`` (N, D) float32, dataset ``coords`` (N, 2) int64 with
each tile's level-0 top-left (x, y), and the attributes (``patch_size_level0``, ``mpp``,
``encoder``, ``encoder_sha256``, ...) on the file and on ``coords`` (where TRIDENT's slide
encoders read ``patch_size_level0``). The file is written under a temporary name in the same
folder and renamed when complete, so an interrupted run leaves no half-written ``.h5``.

h5py is an optional extra: ``pip install 'napari-her2[features]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from .atomic import atomic_path

EXTRA_HINT = "pip install 'napari-her2[features]'"


def require_h5py():
    """The h5py module, or a one-line OutputError naming the extra."""
    try:
        import h5py
    except ImportError as err:
        raise OutputError(f"feature files (.h5) need the optional h5py package: {EXTRA_HINT}"
                          ) from err
    return h5py


def _attr(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, np.generic)) else str(value)


def write_features_h5(path: str | os.PathLike, features: np.ndarray, coords: np.ndarray,
                      attrs: dict[str, Any]) -> Path:
    """Write ``features`` (N, D) and ``coords`` (N, 2) with ``attrs`` to ``path``, atomically;
    OutputError (one line, naming the path) when it cannot be written."""
    target = Path(path)
    feats = np.asarray(features, np.float32)
    xy = np.asarray(coords, np.int64)
    if feats.ndim != 2 or xy.shape != (feats.shape[0], 2):
        raise ValueError(f"features {feats.shape} and coords {xy.shape} do not pair up")
    h5py = require_h5py()
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("features", data=feats)
        dset = f.create_dataset("coords", data=xy)
        for key, value in attrs.items():
            f.attrs[key] = dset.attrs[key] = _attr(value)
    return target
