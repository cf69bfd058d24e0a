"""Where the shared real test data lives (importable by test modules and conftest alike)."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_ENV = "NAPARI_HER2_SHARED_DATA"
DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data_dir() -> Path:
    """Folder of the shared real test files (``$NAPARI_HER2_SHARED_DATA`` overrides it)."""
    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env) if env else DEFAULT_SHARED_DATA
