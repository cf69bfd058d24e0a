"""What the widget paints from a worker's update, and how it words a notification (no Qt)."""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ScoringCancelled
from ..tiles.results import TileResults
from .layers import layer_raster


def results_slice(results: TileResults, start: int, stop: int) -> TileResults:
    """Tiles ``start:stop`` of results that a worker may still be extending.

    The worker only ever replaces its arrays by longer ones, so slices taken once are
    consistent; methods of the live object (which read several arrays) are not.
    """
    emb = results.embeddings
    return replace(results, rows=results.rows[start:stop], cols=results.cols[start:stop],
                   probs=results.probs[start:stop], features=results.features[start:stop],
                   readable=results.readable[start:stop],
                   embeddings=None if emb is None else emb[start:stop])


def results_upto(results: TileResults, stop: int) -> TileResults:
    """The first ``stop`` tiles (what the progress bar counts) as a consistent snapshot."""
    return results_slice(results, 0, stop)


def batch_of(update: Any) -> TileResults:
    """The tiles of one update: its own immutable batch when it carries one, else a slice."""
    batch = getattr(update, "batch", None)
    if batch is not None and hasattr(batch, "tile_labels"):
        return batch
    return results_slice(update.results, update.start, update.stop)


def paint_tiles(layer: Any, batch: TileResults) -> None:
    """Paint a batch's tile classes into the tile layer (k x k raster pixels per tile)."""
    layer_raster(layer).paint(layer.data, batch.rows, batch.cols, batch.tile_labels())
    layer.refresh()


#: longest notification; napari cuts longer ones
NOTIFICATION_CHARS = 110


def notification_text(message: str) -> str:
    """One short line that leads with the reason: "<path>: <reason>" becomes
    "<reason> (<file name>)"; longer than :data:`NOTIFICATION_CHARS` is cut with "…"."""
    text = " ".join(message.split())
    head, sep, reason = text.partition(": ")
    if sep and reason and ("/" in head or "\\" in head or Path(head).suffix):
        text, name = reason, f" ({Path(head).name or head})"
    else:
        name = ""
    room = max(NOTIFICATION_CHARS - len(name), 20)
    if len(text) > room:
        text = text[:room - 1] + "…"
    return text + name


Y = TypeVar("Y")
R = TypeVar("R")


def until_cancelled(steps: Generator[Y, None, R],
                    done: threading.Event) -> Generator[Y, None, R | None]:
    """A worker's generator: the steps of a scoring generator, then its result (None if it
    was cancelled); ``done`` is set however it ends."""
    try:
        return (yield from steps)
    except ScoringCancelled:
        return None
    finally:
        done.set()
