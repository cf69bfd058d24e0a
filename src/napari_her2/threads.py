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


def decode_workers(limit: int = 4) -> int:
    """Threads for decoding one large region (a whole low level): the usable cores, at most
    ``limit``; 1 in sync mode."""
    if sync_mode():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, limit))
