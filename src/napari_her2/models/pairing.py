"""A slide model and the tile model it was trained over.

A WHSPN or attention-MIL checkpoint learned from the outputs of one tile model: MIL from its
embeddings, WHSPN from its class fractions. Another tile model's embeddings have another
meaning (or another size), so a slide model is only used with its own tile model. ``her2-train``
names that tile model in the slide model's card description as
``tile model NAME (ARCHITECTURE, sha256 PREFIX)``; this module reads the note back, finds the
tile checkpoint among the installed ones, and checks a pairing before any tile is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError
from .card import ModelCard
from .catalog import available_predictors

#: how her2-train names the tile model in a slide model's card description
_NOTE = re.compile(r"tile model (?P<name>\S+) \((?P<arch>[^,()]+), sha256 (?P<sha>[0-9a-f]{8,64})\)")


@dataclass(frozen=True)
class TileModelRef:
    """The tile model a slide model was trained over: its card name, architecture and the
    first hex digits of its weights' sha256."""

    name: str
    architecture: str
    sha256_prefix: str

    def matches(self, sha256: str) -> bool:
        return sha256.startswith(self.sha256_prefix)

    def __str__(self) -> str:
        return f"{self.name} ({self.architecture}, sha256 {self.sha256_prefix})"


def tile_model_of(card: ModelCard) -> TileModelRef | None:
    """The tile model a slide model's card names, or None when it names none."""
    m = _NOTE.search(card.description or "")
    return None if m is None else TileModelRef(m["name"], m["arch"].strip(), m["sha"])


def find_tile_model(ref: TileModelRef, models_dir: str | Path | None = None) -> Path | None:
    """The installed tile checkpoint whose weights ``ref`` names (None when not installed)."""
    for info in available_predictors(models_dir):
        if info.path is not None and ref.matches(str(info.card.get("sha256", ""))):
            return info.path
    return None


def paired_tile_model(slide_card: ModelCard, slide_path: str | Path,
                      models_dir: str | Path | None = None) -> Path:
    """The tile checkpoint to use with a slide model; CheckpointError (one line, naming the
    slide model's file) when its card names none or the named one is not installed."""
    ref = tile_model_of(slide_card)
    name = Path(slide_path).name
    if ref is None:
        raise CheckpointError(f"{name}: the card names no tile model to use with this slide "
                              "model; choose the tile model it was trained over")
    path = find_tile_model(ref, models_dir)
    if path is None:
        raise CheckpointError(f"{name}: its tile model {ref} is not installed; put that "
                              "checkpoint in the models folder or choose it as the tile model")
    return path
