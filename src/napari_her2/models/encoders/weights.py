"""Where an encoder's weights are, and reading them: never downloaded, never unpickled.

Weights come from the user: a file given with ``--weights`` (``weights=``), a Hugging Face
snapshot folder (``config.json`` beside the weights) given the same way, or the folder
``<models dir>/encoders/<name>/``. ``.safetensors`` files are read as tensors only; ``.bin``
files with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
containers.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from ...errors import CheckpointError, ModelNotFoundError
from .specs import WEIGHT_FILES, EncoderSpec

#: the sub-folder of the models folder that holds one folder per encoder
ENCODERS_SUBDIR = "encoders"
_CHUNK = 1 << 22


def encoder_dir(spec_name: str, models_dir: Path) -> Path:
    """``<models dir>/encoders/<name>``: where an encoder's weights are looked for."""
    return models_dir / ENCODERS_SUBDIR / spec_name


def weights_in_folder(folder: Path, names: tuple[str, ...] = WEIGHT_FILES) -> Path | None:
    """The weights file of a folder (a snapshot): the first of ``names`` present, else the only
    ``.safetensors`` / ``.bin`` file; None when there is none (or several to choose from)."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix in (".safetensors", ".bin"))
    return found[0] if len(found) == 1 else None


def missing_weights(spec: EncoderSpec, where: Path) -> ModelNotFoundError:
    """The one-line error for an encoder without weights: the reason, the encoder, where to
    put the file and where to get it."""
    return ModelNotFoundError(
        f"no weights found for encoder {spec.name} ({spec.title}): put {spec.files[0]} "
        f"(or the whole Hugging Face snapshot) in {where}, or pass --weights FILE; download it "
        f"yourself from {spec.url} (licence: {spec.licence})")


def locate(spec: EncoderSpec, weights: str | Path | None, models_dir: Path) -> Path:
    """The weights file of ``spec``: ``weights`` (a file, or a snapshot folder), else the
    encoder's folder in the models folder."""
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            found = weights_in_folder(path, spec.files)
            if found is None:
                raise missing_weights(spec, path)
            return found
        raise ModelNotFoundError(f"weights file not found: {path} (encoder {spec.name}; "
                                 f"download it yourself from {spec.url})")
    folder = encoder_dir(spec.name, models_dir)
    found = weights_in_folder(folder, spec.files) if folder.is_dir() else None
    if found is None:
        raise missing_weights(spec, folder)
    return found


def read_config(weights_file: Path) -> dict[str, Any] | None:
    """The ``config.json`` beside a weights file, or None."""
    path = weights_file.parent / "config.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable JSON config ({err})") from err
    return data if isinstance(data, dict) else None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or of a ``.bin`` file (``weights_only``)."""
    try:
        if path.suffix == ".safetensors" or _is_safetensors(path):
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise CheckpointError(f"{path}: cannot read the weights ({reason})") from err
    for key in ("state_dict", "model"):  # a training checkpoint that wraps the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict) and len(state) <= 3:
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                               for v in state.values()):
        raise CheckpointError(f"{path}: not a file of named tensors (a state_dict)")
    return {str(k): v for k, v in state.items()}


def _is_safetensors(path: Path) -> bool:
    """True when the file starts like safetensors (an 8-byte header size, then ``{``)."""
    try:
        with path.open("rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 30


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (what names the weights in an output)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
