"""Thread settings shared by the readers and the scorers.

Set ``NAPARI_HER2_SYNC=1`` to run everything in the calling thread (no pools, no workers): the
switch for debugging with pdb or a profiler.
"""

from __future__ import annotations

import os

SYNC_ENV = "NAPARI_HER2_SYNC"


def sync_mode() -> bool:
    """True when ``NAPARI_HER2_SYNC`` asks for everything in the calling thread."""
    return os.environ.get(SYNC_ENV, "").strip().lower() in ("1", "true", "yes", "on")
