"""A slide model and the tile model (or encoder) it was trained over.

A WHSPN or attention-MIL checkpoint learned from the outputs of one tile model: MIL from its
embeddings, WHSPN from its class fractions. Another tile model's embeddings have another
meaning (or another size), so a slide model is only used with its own tile model. ``her2-train``
names that tile model in the slide model's card description as
``tile model NAME (ARCHITECTURE, sha256 PREFIX)``; this module reads the note back, finds the
tile checkpoint among the installed ones, and checks a pairing before any tile is read.

A MIL model trained on shared feature files (``her2-train mil --features``) names the encoder
of those features in its card's ``encoder`` field instead. When that encoder is an installed
tile checkpoint (same weights sha256) the pairing is the tile model's, as above; otherwise it
is a foundation encoder, loaded by :func:`load_paired_encoder` from the local weights and
refused in one line when missing or when its weights differ.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CheckpointError, Her2Error
from ..params import GridParams
from .card import ModelCard
from .catalog import available_predictors

if TYPE_CHECKING:
    from .encoders import Encoder

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


@dataclass(frozen=True)
class EncoderRef:
    """The encoder a MIL model's card names (its ``encoder`` field): name, weights sha256,
    and, when known, embedding size, tile µm/px, patch side in level-0 pixels and input side."""

    name: str
    sha256: str
    dim: int | None = None
    mpp: float | None = None
    patch_size_level0: int | None = None
    input_px: int | None = None

    def matches(self, sha256: str) -> bool:
        return sha256 == self.sha256

    def __str__(self) -> str:
        return f"{self.name} (sha256 {self.sha256[:16]})"


def tile_model_of(card: ModelCard) -> TileModelRef | None:
    """The tile model a slide model's card names, or None when it names none."""
    m = _NOTE.search(card.description or "")
    return None if m is None else TileModelRef(m["name"], m["arch"].strip(), m["sha"])


def encoder_of(card: ModelCard) -> EncoderRef | None:
    """The encoder a MIL model's card names in its ``encoder`` field, or None."""
    enc = card.encoder
    if enc is None:
        return None
    return EncoderRef(**{k: v for k, v in enc.items() if k in EncoderRef.__dataclass_fields__})


def slide_pairing(card: ModelCard,
                  models_dir: str | Path | None = None) -> TileModelRef | EncoderRef | None:
    """What a slide model must be used with: the tile model its description names; else the
    installed tile checkpoint whose weights are its card's encoder (as a TileModelRef); else
    the encoder itself (a foundation encoder); None when the card names neither."""
    ref = tile_model_of(card)
    enc = encoder_of(card)
    if ref is not None or enc is None:
        return ref
    for info in available_predictors(models_dir):
        if info.path is not None and enc.matches(str(info.card.get("sha256", ""))):
            return TileModelRef(enc.name, str(info.card.get("architecture", "")), enc.sha256)
    return enc


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
    ref = slide_pairing(slide_card, models_dir)
    name = Path(slide_path).name
    if not isinstance(ref, TileModelRef):
        raise CheckpointError(f"{name}: the card names no tile model to use with this slide "
                              "model; choose the tile model it was trained over")
    path = find_tile_model(ref, models_dir)
    if path is None:
        raise CheckpointError(f"{name}: its tile model {ref} is not installed; put that "
                              "checkpoint in the models folder or choose it as the tile model")
    return path


def load_paired_encoder(ref: EncoderRef, slide_name: str, *,
                        models_dir: str | Path | None = None, device: str = "cpu") -> Encoder:
    """The foundation encoder a MIL model was trained over, loaded from the local weights;
    CheckpointError (one line, naming the slide model) when it cannot be loaded, or when its
    weights or embedding size are not those the card names."""
    from .encoders import load_encoder

    try:
        encoder = load_encoder(ref.name, models_dir=models_dir, device=device)
    except (Her2Error, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{slide_name}: its encoder {ref} is not available ({reason})"
                              ) from None
    if not ref.matches(encoder.sha256):
        raise CheckpointError(
            f"{slide_name}: trained over encoder {ref}; the installed {encoder.name} has "
            f"weights sha256 {encoder.sha256[:16]}, other weights")
    if ref.dim is not None and encoder.dim != ref.dim:
        raise CheckpointError(f"{slide_name}: its encoder {ref} gives {ref.dim}-d embeddings; "
                              f"the installed {encoder.name} gives {encoder.dim}-d ones")
    return encoder


@dataclass(frozen=True)
class PairedEncoder:
    """A foundation encoder loaded for a MIL model: what the card names (``ref``), the loaded
    encoder, and the slide model's name (for messages). ``embed`` gives the MIL's inputs."""

    ref: EncoderRef
    encoder: Encoder
    slide_name: str

    @property
    def mpp(self) -> float:
        """µm/px the tiles are read at: the card's (what the MIL was trained on), else the
        encoder's own."""
        return float(self.ref.mpp if self.ref.mpp is not None else self.encoder.mpp)

    @property
    def input_px(self) -> int:
        """Tile side the features were made from (the card's), else the encoder's input side
        (``embed`` resizes other sides to it)."""
        return int(self.ref.input_px or self.encoder.input_px)

    def grid(self, grid: GridParams) -> GridParams:
        """For a scorer that takes any geometry: tiles at the encoder's µm/px and tile side,
        unless the user set them (checked by :meth:`check_tiles`, as a CNN's are)."""
        return replace(grid, tile_size=grid.tile_size or self.input_px,
                       target_mpp=grid.target_mpp or self.mpp)

    def embed(self, tiles: np.ndarray) -> np.ndarray:
        """(N, dim) float32 embeddings of uint8 (N, H, W, 3) tiles."""
        return np.asarray(self.encoder.embed(tiles), np.float32)

    def check_tiles(self, tile_size: int, tile_mpp: float, tile_model: str) -> None:
        """Refuse tiles read at another µm/px than the encoder's, or (when the card gives the
        side its features were made from) of another side: either would show the MIL model
        other fields than it was trained on."""
        mpp, size = self.mpp, self.ref.input_px
        if math.isclose(mpp, tile_mpp, rel_tol=1e-3) and size in (None, tile_size):
            return
        wanted = f"{size} px tiles at {mpp:g} µm/px" if size else f"tiles at {mpp:g} µm/px"
        raise CheckpointError(
            f"{self.slide_name}: its encoder {self.ref.name} embeds {wanted} and {tile_model} "
            f"reads {tile_size} px tiles at {tile_mpp:g} µm/px; choose a weight-free scorer "
            f"(it reads tiles as the encoder does) or a tile model that reads {wanted}")


def paired_encoder(card: ModelCard, slide_name: str, tile_sha256: str, *,
                   models_dir: str | Path | None = None,
                   device: str = "cpu") -> PairedEncoder | None:
    """The foundation encoder a MIL model needs beside the chosen tile model: None when its
    card names no encoder, or one that is a tile checkpoint (installed, or the chosen tile
    model itself, whose embeddings are used); else loaded and checked (CheckpointError)."""
    ref = slide_pairing(card, models_dir)
    if not isinstance(ref, EncoderRef) or ref.matches(tile_sha256):
        return None
    encoder = load_paired_encoder(ref, slide_name, models_dir=models_dir, device=device)
    return PairedEncoder(ref, encoder, slide_name)
