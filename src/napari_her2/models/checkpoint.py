"""Checkpoints: safetensors weights + a JSON model card in the file's metadata.

Loading never runs code: pickle-based formats (``.pt``, ``.pth``, ``.pkl``, ``.ckpt``, and
any file whose bytes are a pickle stream or a zip archive, whatever its name) are refused
before anything is parsed. A safetensors file is then checked step by step, and every
refusal is a one-line :class:`CheckpointError` naming the file and the problem: the card
(present, valid JSON, valid fields), the architecture (registered, arguments accepted, as
many outputs as classes), the weights (sha256 as on the card, same keys and shapes as the
architecture). Writes go to a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ..errors import CheckpointError, ModelNotFoundError
from .card import ModelCard
from .registry import arch_info, get_model, model_spec

logger = logging.getLogger(__name__)

CARD_KEY = "napari_her2.model_card"
FORMAT_KEY = "format"
FORMAT = "napari-her2-checkpoint/1"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
_MAX_HEADER = 100 * 1024 * 1024


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: {' '.join(str(problem).split())}")


def weights_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the weights: name, dtype, shape and raw bytes of each tensor, sorted by name."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\0{str(t.dtype)}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(path: str | Path, model: nn.Module, card: ModelCard) -> ModelCard:
    """Write ``model``'s weights and ``card`` to ``path`` (.safetensors), atomically.

    The model's own architecture name and constructor arguments (recorded by ``get_model``;
    a re-parameterized copy records ``deploy=True``) are written into the card, and so is
    the sha256 of the weights. A card naming another architecture, or a class count that
    differs from the model's outputs, is refused. Returns the card as written.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise _fail(path, "checkpoints are written as .safetensors files")
    try:
        name, args = arch_info(model)
    except ValueError as err:
        raise _fail(path, str(err)) from None
    if card.architecture != name:
        raise _fail(path, f"card says architecture {card.architecture!r}, model is {name!r}")
    _check_class_count(path, model, card)
    tensors = _state_tensors(model)
    final = card.replace(arch_args=args, sha256=weights_sha256(tensors))
    metadata = {CARD_KEY: final.to_json(), FORMAT_KEY: FORMAT}
    _atomic_write(path, st_save(tensors, metadata=metadata))
    logger.info("saved %s checkpoint to %s (sha256 %s)", name, path, final.sha256[:12])
    return final


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_safe_file(path: Path) -> bytes:
    """Refuse pickle/zip files by name or content; return the file's bytes if it may be
    a safetensors file (8-byte little-endian header length, then a JSON object)."""
    lower = path.name.lower()
    if lower.endswith(PICKLE_SUFFIXES):
        raise _fail(
            path,
            f"'{path.suffix}' checkpoints are pickle-based and can run code "
            "when loaded; refused (convert it to .safetensors)",
        )
    if not path.is_file():
        raise _fail(path, "no such checkpoint file")
    data = path.read_bytes()
    head = data[:8]
    n = int.from_bytes(head, "little") if len(data) >= 8 else 0
    if 2 <= n <= min(len(data) - 8, _MAX_HEADER) and data[8:9] == b"{":
        return data
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        raise _fail(
            path,
            "file is a pickle stream; pickle checkpoints can run code when loaded and are refused",
        )
    if head[:2] == b"PK":
        raise _fail(path, "file is a zip archive (torch.save format, pickle inside); refused")
    if len(data) < 10:
        raise _fail(path, "file is too short to be a safetensors checkpoint")
    raise _fail(path, "not a safetensors file")


def _read_metadata(path: Path, data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _fail(path, "safetensors header is not valid JSON") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def read_card(path: str | Path) -> ModelCard:
    """The model card of a checkpoint, checked for safety and validity (weights not read)."""
    path = Path(path)
    return _card_from(path, check_safe_file(path))


def _card_from(path: Path, data: bytes) -> ModelCard:
    meta = _read_metadata(path, data)
    if CARD_KEY not in meta:
        raise _fail(path, "has no napari-her2 model card in its metadata")
    try:
        return ModelCard.from_json(meta[CARD_KEY])
    except (ValueError, TypeError) as err:
        raise _fail(path, f"invalid model card: {err}") from None


def _build(path: Path, card: ModelCard) -> nn.Module:
    try:
        model_spec(card.architecture)
    except ModelNotFoundError as err:
        raise _fail(path, f"card names an unknown architecture: {err}") from None
    try:
        model = get_model(card.architecture, **card.arch_args)
    except (TypeError, ValueError) as err:
        raise _fail(path, f"card's arguments do not fit {card.architecture!r}: {err}") from None
    _check_class_count(path, model, card)
    return model


def _check_class_count(path: Path, model: nn.Module, card: ModelCard) -> None:
    n = getattr(model, "num_classes", None)
    if n is not None and n != len(card.classes):
        raise _fail(path, f"card lists {len(card.classes)} classes, model has {n} outputs")


def _check_weights(path: Path, model: nn.Module, tensors: dict[str, Any], card: ModelCard) -> None:
    actual = weights_sha256(tensors)
    if card.sha256 != actual:
        raise _fail(
            path,
            f"weights sha256 {actual[:12]}... does not match the card's "
            f"{card.sha256[:12] or '(none)'}...",
        )
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise _fail(
            path,
            f"weights do not match {card.architecture!r}: missing keys "
            f"{_few(missing)}, unexpected keys {_few(unexpected)}",
        )
    bad = [
        f"{k} {tuple(tensors[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(tensors[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise _fail(
            path,
            f"weight shapes do not match {card.architecture!r} (checkpoint vs model): {_few(bad)}",
        )


def _few(items: list[str], n: int = 3) -> str:
    if not items:
        return "none"
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelCard]:
    """Load a checkpoint: (model in eval mode on ``device``, its card).

    Raises :class:`CheckpointError` (one line, naming the file) for a pickle/zip file, a
    missing or invalid card, an unknown architecture or bad arguments, or weights that do not
    match the card (sha256) or the architecture (keys, shapes).
    """
    path = Path(path)
    data = check_safe_file(path)
    card = _card_from(path, data)
    model = _build(path, card)
    try:
        tensors = st_load(data)
    except SafetensorError as err:
        raise _fail(path, f"corrupt safetensors data: {err}") from None
    _check_weights(path, model, tensors, card)
    model.load_state_dict(tensors, strict=True)
    model.to(device).eval()
    logger.info("loaded %s checkpoint %s", card.architecture, path)
    return model, card
