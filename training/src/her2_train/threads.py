"""How many CPU threads torch uses while training.

Small models on a few cores train fastest with few intra-op threads: thread hand-offs cost
more than the work they share (measured 2-5x faster with one thread than with two on a
loaded 2-core machine), and the batch-preparing thread needs a core of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import torch


def default_threads() -> int:
    """One core for preparing batches, the rest for torch (at least one)."""
    return max(1, (os.cpu_count() or 1) - 1)


@contextmanager
def torch_threads(n: int | None = None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (default :func:`default_threads`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n or default_threads()))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_thread() -> AbstractContextManager[None]:
    """One torch thread: for tiny models (MIL, WHSPN) that step far faster that way."""
    return torch_threads(1)
