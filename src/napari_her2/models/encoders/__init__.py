"""Tile encoders: uint8 RGB tiles -> one embedding per tile, for MIL and feature files.

- :mod:`.encoder`: :class:`Encoder`, what every tile embedder is;
- :mod:`.loading`: :func:`load_encoder`, :func:`list_encoders`;
- :mod:`.specs`: the pathology foundation encoders (UNI, UNI2-h, Virchow2, H-optimus-0/1,
  Phikon-v2, CONCH v1.5, Prov-GigaPath): architecture, tile, normalisation, licence;
- :mod:`.vit`: their Vision Transformers in plain torch, under timm's parameter names;
- :mod:`.build`: a network built from its spec and loaded strictly from its weights;
- :mod:`.weights`: where the weights are (never downloaded) and reading them safely;
- :mod:`.hf_dinov2`: transformers' Dinov2Model names (Phikon-v2) mapped onto timm's;
- :mod:`.tile_models`: the tile-model checkpoints as encoders (their penultimate features);
- :mod:`.timm_backend`: ``timm:ARCH`` when the optional timm is installed.
"""

from __future__ import annotations

from .encoder import Encoder
from .loading import encoder_from_spec, list_encoders, load_encoder
from .specs import SPECS, EncoderSpec, find_spec
from .vit import ViTConfig

__all__ = [
    "SPECS",
    "Encoder",
    "EncoderSpec",
    "ViTConfig",
    "encoder_from_spec",
    "find_spec",
    "list_encoders",
    "load_encoder",
]
