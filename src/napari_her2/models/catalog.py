"""Where checkpoints live, and what models and checkpoints are available.

Checkpoints (``*.safetensors``) are looked up in the user's models folder
(:func:`models_dir`: ``$NAPARI_HER2_MODELS`` or ``~/.napari-her2/models``) and then in the
package's ``checkpoints/`` folder (demo checkpoints shipped with the plugin). A checkpoint's
name is its file stem; the user folder wins when both hold the same name.

Listing never loads weights: the lists and :func:`describe_models` read each checkpoint's
safetensors header only (its card, see :func:`~napari_her2.models.checkpoint.read_card`);
sha256 and shapes are verified when a checkpoint is loaded for scoring. A file that cannot
be read or whose card is invalid is skipped with a warning (shown as invalid, with the
reason, by :func:`describe_models`); the others are still listed.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from .card import ModelCard
from .checkpoint import card_from_header, read_card, read_header
from .registry import count_parameters, get_model, list_models, model_spec
from .reparam import reparameterize_model, supports_reparameterization

logger = logging.getLogger(__name__)

ENV_VAR = "NAPARI_HER2_MODELS"
PACKAGE_CHECKPOINTS = Path(__file__).parent / "checkpoints"
WEIGHT_FREE = "dab-membrane"
#: the weight-free scorer that counts cells
WEIGHT_FREE_CELLS = "dab-cells"


@dataclass(frozen=True)
class PredictorInfo:
    """A tile scorer the plugin can offer: the weight-free one or a checkpoint."""

    name: str
    kind: str  # "weight-free" or "checkpoint"
    path: Path | None
    card: dict[str, Any]


def models_dir() -> Path:
    """The user's checkpoint folder: ``$NAPARI_HER2_MODELS`` or ``~/.napari-her2/models``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".napari-her2" / "models"


def checkpoint_dirs(folder: str | Path | None = None) -> list[Path]:
    """Folders searched for checkpoints, in order: ``folder`` (default :func:`models_dir`),
    then the package's shipped checkpoints."""
    first = Path(folder).expanduser() if folder is not None else models_dir()
    return [first] if first == PACKAGE_CHECKPOINTS else [first, PACKAGE_CHECKPOINTS]


def checkpoint_files(folder: str | Path | None = None) -> dict[str, Path]:
    """name (file stem) -> path of every ``*.safetensors`` file, first folder winning."""
    found: dict[str, Path] = {}
    for directory in checkpoint_dirs(folder):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.safetensors")):
            if path.stem in found:
                logger.warning("%s: shadowed by %s (same name)", path, found[path.stem])
                continue
            found[path.stem] = path
    return found


def find_checkpoint(name: str, folder: str | Path | None = None) -> Path | None:
    """The checkpoint called ``name``: by file stem, else by the ``name`` on its card."""
    files = checkpoint_files(folder)
    if name in files:
        return files[name]
    for path in files.values():
        try:
            if read_card(path).name == name:
                return path
        except CheckpointError as err:
            logger.debug("skipping %s", err)
    return None


def _weight_free_card() -> dict[str, Any]:
    try:
        from ..ihc.scorer import DabMembraneScorer
    except ImportError as err:
        logger.warning("the %s scorer is unavailable: %s", WEIGHT_FREE, err)
        return {"name": WEIGHT_FREE}
    return DabMembraneScorer().describe()


def _cell_scorer_card() -> dict[str, Any]:
    from ..ihc.cell_scorer import DabCellScorer

    return DabCellScorer().describe()


def available_predictors(models_dir: str | Path | None = None) -> list[PredictorInfo]:
    """The weight-free scorers first (``dab-cells``, the default, then ``dab-membrane``), then
    every tile-model checkpoint whose card is valid (read from the header; weights are
    verified when loaded for scoring).

    Unreadable or invalid files are skipped with a warning in the log; non-tile checkpoints
    (MIL, WHSPN) are left out.
    """
    infos = [PredictorInfo(WEIGHT_FREE_CELLS, "weight-free", None, _cell_scorer_card()),
             PredictorInfo(WEIGHT_FREE, "weight-free", None, _weight_free_card())]
    return infos + _listed_checkpoints(("tile",), models_dir)


def available_slide_models(models_dir: str | Path | None = None) -> list[PredictorInfo]:
    """Every slide-level checkpoint with a valid card: WHSPN aggregators and attention MIL."""
    return _listed_checkpoints(("slide", "mil"), models_dir)


def _listed_checkpoints(
    kinds: tuple[str, ...], models_dir: str | Path | None
) -> list[PredictorInfo]:
    infos = []
    for name, path in checkpoint_files(models_dir).items():
        try:
            card = read_card(path)
        except CheckpointError as err:
            logger.warning("skipping checkpoint: %s", err)
            continue
        if model_spec(card.architecture).kind in kinds:
            infos.append(PredictorInfo(name, "checkpoint", path, card.to_dict()))
    return infos


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def describe_architecture(name: str) -> dict[str, Any]:
    """Registry entry of ``name`` with its default arguments and parameter count(s).

    The counts come from models built on torch's ``meta`` device: no weight is allocated.
    """
    spec = model_spec(name)
    model = _sketch(name)
    info: dict[str, Any] = {
        "type": "architecture",
        "name": name,
        "kind": spec.kind,
        "summary": spec.summary,
        "source": spec.source,
        "default_args": _jsonable(spec.default_args()),
        "parameters": count_parameters(model),
    }
    if supports_reparameterization(model):
        deploy = (
            _sketch(name, deploy=True)
            if "deploy" in spec.default_args()
            else reparameterize_model(model)
        )
        info["deploy_parameters"] = count_parameters(deploy)
    return info


def _sketch(name: str, **kwargs: Any) -> nn.Module:
    """The architecture built on the meta device (shapes only, no memory for weights)."""
    with torch.device("meta"):
        return get_model(name, **kwargs)


def describe_checkpoint(name: str, path: Path) -> dict[str, Any]:
    """A checkpoint with its card, or with the reason it is invalid; reads the header only.

    ``stored_values`` is the number of values in the file (parameters and buffers such as
    batch-norm statistics); ``file_bytes`` its size.
    """
    entry: dict[str, Any] = {"type": "checkpoint", "name": name, "path": str(path)}
    try:
        header = read_header(path)
        card: ModelCard = card_from_header(header)
    except CheckpointError as err:
        return {**entry, "valid": False, "error": str(err)}
    stored = sum(math.prod(t.shape) for t in header.tensors.values())
    return {
        **entry,
        "valid": True,
        "kind": model_spec(card.architecture).kind,
        "stored_values": stored,
        "file_bytes": header.file_size,
        "card": card.to_dict(),
    }


def describe_models(models_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Everything ``napari-her2 models`` shows: the weight-free scorers, the registered
    architectures (name, summary, default args, parameter count) and the checkpoints found
    (with their cards; invalid ones with ``valid: False`` and the error). No checkpoint's
    weights are read and no model is built with real weights."""
    out: list[dict[str, Any]] = [
        {"type": "weight-free", "name": WEIGHT_FREE_CELLS, "card": _cell_scorer_card()},
        {"type": "weight-free", "name": WEIGHT_FREE, "card": _weight_free_card()},
    ]
    out += [describe_architecture(name) for name in list_models()]
    out += [describe_checkpoint(n, p) for n, p in checkpoint_files(models_dir).items()]
    return out
