"""Checkpoints: safetensors weights + a JSON model card in the file's metadata.

Loading never runs code: pickle-based formats (``.pt``, ``.pth``, ``.pkl``, ``.ckpt``, and
any file whose bytes are a pickle stream or a zip archive, whatever its name) are refused
before anything is parsed. A safetensors file is then checked step by step, and every
refusal is a one-line :class:`CheckpointError` naming the file and the problem:

1. the header (:func:`read_header`): only the 8-byte length and the JSON header are read,
   the length is bounded (:data:`MAX_HEADER_BYTES`, and within the file), the JSON is
   bounded in depth, every tensor entry lies inside the file;
2. the card (:func:`read_card`): present, valid, within the bounds of
   :mod:`napari_her2.models.card`, naming a registered architecture whose constructor takes
   its arguments. Listing models stops here: no tensor is read, no model built;
3. the architecture (:func:`load_checkpoint`): built first on torch's ``meta`` device (no
   memory) to cap its size (:data:`~napari_her2.models.registry.MAX_PARAMETERS`) and compare
   its keys, shapes and class count with the header, then for real;
4. the weights: streamed tensor by tensor from a memory map into the model while their
   sha256 is computed, which must equal the card's.

Writes go to a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import nn

from ..errors import CheckpointError, ModelNotFoundError
from .card import ModelCard, parse_json
from .registry import MAX_PARAMETERS, arch_info, get_model, model_spec

logger = logging.getLogger(__name__)

CARD_KEY = "napari_her2.model_card"
FORMAT_KEY = "format"
FORMAT = "napari-her2-checkpoint/1"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
#: largest safetensors JSON header read (the card lives in it; the weights do not)
MAX_HEADER_BYTES = 16 * 1024 * 1024
#: largest metadata (``__metadata__``, the card included) as JSON text
MAX_METADATA_CHARS = 1024 * 1024
_MAX_DIMS = 8
#: bytes per element of the safetensors dtypes
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header describes it: dtype, shape, byte range in the data."""

    dtype: str
    shape: tuple[int, ...]
    offsets: tuple[int, int]


@dataclass(frozen=True)
class CheckpointHeader:
    """What a safetensors header says, checked for consistency with the file's size."""

    path: Path
    file_size: int
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: {' '.join(str(problem).split())}")


def _hash_tensor(digest: Any, name: str, tensor: torch.Tensor) -> None:
    t = tensor.detach().to("cpu").contiguous()
    digest.update(f"{name}\0{str(t.dtype)}\0{tuple(t.shape)}\0".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy())


def weights_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the weights: name, dtype, shape and raw bytes of each tensor, sorted by name."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        _hash_tensor(digest, name, tensors[name])
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


def check_safe_file(path: Path) -> int:
    """Refuse pickle/zip files by name or content, and anything that is not a regular file
    starting like a safetensors file (8-byte little-endian header length within bounds and
    within the file, then a JSON object). Returns the header length; reads 9 bytes."""
    _refuse_pickle_suffix(path)
    with _open_regular(path) as fh:
        return _header_length(path, _read(path, fh, 9), os.fstat(fh.fileno()).st_size)


def _refuse_pickle_suffix(path: Path) -> None:
    if path.name.lower().endswith(PICKLE_SUFFIXES):
        raise _fail(
            path,
            f"'{path.suffix}' checkpoints are pickle-based and can run code "
            "when loaded; refused (convert it to .safetensors)",
        )


def _open_regular(path: Path) -> BinaryIO:
    """The file opened for reading; refused unless it is a regular file. Opening does not
    block on a pipe (O_NONBLOCK), and the type is checked on the open file itself."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise _fail(path, "no such checkpoint file") from None
    except OSError as err:
        raise _fail(path, f"cannot be opened ({err.strerror or err})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _fail(path, "not a regular file (a folder, pipe or device); refused")
    return os.fdopen(fd, "rb")


def _read(path: Path, fh: BinaryIO, size: int) -> bytes:
    try:
        return fh.read(size)
    except OSError as err:
        raise _fail(path, f"cannot be read ({err.strerror or err})") from None


def _header_length(path: Path, head: bytes, size: int) -> int:
    n = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
    if 2 <= n <= min(size - 8, MAX_HEADER_BYTES) and head[8:9] == b"{":
        return n
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        raise _fail(
            path,
            "file is a pickle stream; pickle checkpoints can run code when loaded and are refused",
        )
    if head[:2] == b"PK":
        raise _fail(path, "file is a zip archive (torch.save format, pickle inside); refused")
    if size < 10:
        raise _fail(path, "file is too short to be a safetensors checkpoint")
    if n > MAX_HEADER_BYTES:
        raise _fail(
            path, f"safetensors header length {n} exceeds the {MAX_HEADER_BYTES} byte limit"
        )
    if n > size - 8:
        raise _fail(path, f"safetensors header length {n} runs past the end of the file")
    raise _fail(path, "not a safetensors file")


def read_header(path: str | Path) -> CheckpointHeader:
    """The checked safetensors header of a checkpoint; reads the header only, not the tensors.

    Raises :class:`CheckpointError` (one line, naming the file) for a pickle/zip file, an
    absurd header length, header JSON that is invalid or nested too deeply, metadata that
    is not a small string map, or tensor entries that do not fit the file.
    """
    path = Path(path)
    _refuse_pickle_suffix(path)
    with _open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        n = _header_length(path, _read(path, fh, 9), size)
        raw = b"{" + _read(path, fh, n - 1)
    try:
        header = parse_json(raw, "safetensors header")
    except ValueError as err:
        raise _fail(path, str(err)) from None
    if not isinstance(header, dict):
        raise _fail(path, "safetensors header is not a JSON object")
    metadata = _metadata(path, header.pop("__metadata__", None))
    room = size - 8 - n
    tensors = {name: _tensor_entry(path, name, entry, room) for name, entry in header.items()}
    return CheckpointHeader(path, size, tensors, metadata)


def _metadata(path: Path, meta: Any) -> dict[str, str]:
    if meta is None:
        return {}
    ok = isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())
    if not ok:
        raise _fail(path, "safetensors metadata must map names to strings")
    if sum(len(k) + len(v) for k, v in meta.items()) > MAX_METADATA_CHARS:
        raise _fail(path, f"safetensors metadata is larger than {MAX_METADATA_CHARS} characters")
    return meta


def _tensor_entry(path: Path, name: str, entry: Any, room: int) -> TensorEntry:
    """One header entry, checked: known dtype, small non-negative shape, bytes in the file."""
    bad = f"corrupt safetensors data: tensor {name[:80]!r}"
    if not isinstance(entry, dict):
        raise _fail(path, f"{bad} is not described by an object")
    dtype = entry.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise _fail(path, f"{bad} has an unknown dtype")
    shape = _int_tuple(entry.get("shape"), 0, _MAX_DIMS)
    offsets = _int_tuple(entry.get("data_offsets"), 2, 2)
    if shape is None or offsets is None:
        raise _fail(path, f"{bad} has an invalid shape or data_offsets")
    begin, end = offsets
    if not 0 <= begin <= end <= room:
        raise _fail(path, f"{bad} lies outside the file's data (truncated?)")
    if end - begin != math.prod(shape) * DTYPE_SIZES[dtype]:
        raise _fail(path, f"{bad} has {end - begin} bytes, not what its shape needs")
    return TensorEntry(dtype, shape, (begin, end))


def _int_tuple(value: Any, min_len: int, max_len: int) -> tuple[int, ...] | None:
    """``value`` as a tuple of non-negative ints of an allowed length, else None."""
    ok = (
        isinstance(value, list)
        and min_len <= len(value) <= max_len
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    )
    return tuple(value) if ok else None


def read_card(path: str | Path) -> ModelCard:
    """The model card of a checkpoint, from its header only (no tensor read, no model built).

    The card is validated (fields and bounds) and must name a registered architecture whose
    constructor accepts its arguments; otherwise :class:`CheckpointError` naming the file.
    """
    return card_from_header(read_header(path))


def card_from_header(header: CheckpointHeader) -> ModelCard:
    """The validated card held in a header's metadata (see :func:`read_card`)."""
    path = header.path
    if CARD_KEY not in header.metadata:
        raise _fail(path, "has no napari-her2 model card in its metadata")
    try:
        card = ModelCard.from_json(header.metadata[CARD_KEY])
    except (ValueError, TypeError) as err:
        raise _fail(path, f"invalid model card: {err}") from None
    try:
        spec = model_spec(card.architecture)
    except ModelNotFoundError as err:
        raise _fail(path, f"card names an unknown architecture: {err}") from None
    try:
        spec.resolve_args(card.arch_args)
    except TypeError as err:
        raise _fail(path, f"card's arguments do not fit {card.architecture!r}: {err}") from None
    return card


def _build(header: CheckpointHeader, card: ModelCard) -> nn.Module:
    """The card's architecture, checked on the meta device against the header, then built."""
    path = header.path
    try:
        with torch.device("meta"):
            sketch = get_model(card.architecture, **card.arch_args)
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as err:
        raise _fail(path, f"card's arguments do not fit {card.architecture!r}: {err}") from None
    n = sum(t.numel() for t in sketch.state_dict().values())  # parameters and buffers
    if n > MAX_PARAMETERS:
        raise _fail(
            path,
            f"card's {card.architecture!r} has {n:,} parameters and buffers, "
            f"more than the {MAX_PARAMETERS:,} allowed",
        )
    _check_class_count(path, sketch, card)
    _check_layout(path, sketch, header.tensors, card)
    return get_model(card.architecture, **card.arch_args)


def _check_class_count(path: Path, model: nn.Module, card: ModelCard) -> None:
    n = getattr(model, "num_classes", None)
    if n is not None and n != len(card.classes):
        raise _fail(path, f"card lists {len(card.classes)} classes, model has {n} outputs")


def _check_layout(
    path: Path, model: nn.Module, tensors: dict[str, TensorEntry], card: ModelCard
) -> None:
    """Same tensor names and shapes in the file as in the architecture."""
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
        f"{k} {tensors[k].shape} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if tensors[k].shape != tuple(v.shape)
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
    return ", ".join(i[:120] for i in items[:n]) + more


def _stream_weights(header: CheckpointHeader, model: nn.Module, card: ModelCard) -> None:
    """Copy the tensors into ``model`` one at a time from a memory map, hashing each; the
    sha256 must equal the card's."""
    path, digest = header.path, hashlib.sha256()
    state = model.state_dict()
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh, torch.no_grad():
            for name in sorted(header.tensors):
                tensor = fh.get_tensor(name)
                _hash_tensor(digest, name, tensor)
                state[name].copy_(tensor)
    except (SafetensorError, RuntimeError, ValueError, TypeError, OSError) as err:
        raise _fail(path, f"corrupt safetensors data: {err}") from None
    actual = digest.hexdigest()
    if card.sha256 != actual:
        raise _fail(
            path,
            f"weights sha256 {actual[:12]}... does not match the card's "
            f"{card.sha256[:12] or '(none)'}...",
        )


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelCard]:
    """Load a checkpoint: (model in eval mode on ``device``, its card).

    Raises :class:`CheckpointError` (one line, naming the file) for a pickle/zip file, a
    bad header, a missing or invalid card, an unknown architecture, bad or oversized
    arguments, or weights that do not match the architecture (keys, shapes) or the card
    (sha256). The file is never read whole: the tensors are streamed from a memory map.
    """
    header = read_header(path)
    card = card_from_header(header)
    model = _build(header, card)
    _stream_weights(header, model, card)
    model.to(device).eval()
    logger.info("loaded %s checkpoint %s", card.architecture, header.path)
    return model, card
