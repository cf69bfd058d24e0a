"""How an :class:`~.encoder.Encoder` is loaded or listed.

``load_encoder`` resolves, in order: ``timm:ARCH`` (any timm architecture, timm installed);
a pathology foundation encoder by name (``uni``, ``uni2-h``, ``virchow2``, ``h-optimus-0``,
``h-optimus-1``, ``phikon-v2``, ``conch-v1.5``, ``prov-gigapath``) from weights the user
downloaded; a Hugging Face snapshot folder of one of them; a shipped or user tile-model
checkpoint, whose penultimate features (what the MIL models consume) are its embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import ModelNotFoundError
from ..catalog import models_dir as default_models_dir
from . import build, weights
from .encoder import Encoder, network_runner
from .specs import SPECS, EncoderSpec, find_spec
from .tile_models import tile_encoder, tile_encoder_infos
from .timm_backend import timm_encoder


def encoder_from_spec(spec: EncoderSpec, weights_path: str | Path | None = None, *,
                      models_dir: str | Path | None = None, device: str = "cpu") -> Encoder:
    """The encoder ``spec`` describes, from its weights (see :func:`load_encoder`)."""
    from ..predictors import resolve_device

    folder = Path(models_dir).expanduser() if models_dir is not None else default_models_dir()
    path = weights.locate(spec, weights_path, folder)
    state = weights.read_state_dict(path)
    net, cfg = build.build_network(spec, state, str(path), weights.read_config(path))
    dev = resolve_device(device)
    forward = build.embedding_function(spec, net.to(dev), cfg)
    return Encoder(spec.name, weights.file_sha256(path), build.output_dim(spec, cfg),
                   spec.input_px, spec.mpp,
                   spec.mean, spec.std, spec.licence, "foundation", dev.type,
                   network_runner(forward, spec.input_px, spec.mean, spec.std, dev))


def load_encoder(name_or_path: str, *, weights: str | Path | None = None,
                 models_dir: str | Path | None = None, device: str = "cpu") -> Encoder:
    """A ready :class:`Encoder`. Nothing is ever downloaded.

    ``name_or_path``: ``timm:ARCH`` (needs ``weights``), a foundation encoder's name, a
    Hugging Face snapshot folder of one, or a tile-model checkpoint (name or ``.safetensors``
    path). ``weights``: the weights file or snapshot folder (default for a foundation
    encoder: ``<models dir>/encoders/<name>/``). Errors are one line: ModelNotFoundError
    (no such encoder, no weights: says where to put them and where to get them),
    CheckpointError (weights that do not match, unreadable files, timm missing).
    """
    text = str(name_or_path)
    if text.startswith("timm:"):
        return timm_encoder(text[len("timm:"):], weights, device)
    spec = find_spec(text)
    if spec is not None:
        return encoder_from_spec(spec, weights, models_dir=models_dir, device=device)
    path = Path(text).expanduser()
    if path.is_dir():
        spec = spec_of_folder(path)
        if spec is None:
            raise ModelNotFoundError(
                f"cannot tell which encoder the folder {path} holds; pass --encoder NAME "
                f"--weights {path} (names: {', '.join(SPECS)})")
        return encoder_from_spec(spec, weights or path, models_dir=models_dir, device=device)
    return tile_encoder(text, models_dir=models_dir, device=device)


def spec_of_folder(folder: Path) -> EncoderSpec | None:
    """The encoder a snapshot folder holds, from its ``config.json`` (the Hugging Face repo it
    names) or from its name (``UNI2-h``, or a cache folder ``models--MahmoodLab--UNI2-h``)."""
    config = weights.read_config(folder / "config.json") or {}
    candidates = [str(config.get(k, "")) for k in ("_name_or_path", "hf_hub_id")]
    candidates.append(str((config.get("pretrained_cfg") or {}).get("hf_hub_id", "")))
    names = [folder.name]
    if folder.parent.name == "snapshots":  # the Hugging Face cache: models--ORG--NAME/snapshots/REV
        names.append(folder.parent.parent.name.removeprefix("models--").replace("--", "/"))
    candidates += names
    for text in candidates:
        if text:
            spec = find_spec(text) or find_spec(text.rsplit("/", 1)[-1])
            if spec is not None:
                return spec
    return None


def list_encoders(models_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Every encoder napari-her2 knows: the foundation encoders (with whether their weights
    are in ``<models dir>/encoders/<name>/``, and where to get them), then the tile-model
    checkpoints that double as encoders. No weights are read."""
    folder = Path(models_dir).expanduser() if models_dir is not None else default_models_dir()
    out = []
    for spec in SPECS.values():
        place = weights.encoder_dir(spec.name, folder)
        found = weights.weights_in_folder(place, spec.files) if place.is_dir() else None
        out.append({**spec.describe(), "type": "encoder", "kind": "foundation",
                    "weights_found": found is not None,
                    "weights": str(found) if found else None, "weights_dir": str(place),
                    "get_weights": spec.url})
    return out + tile_encoder_infos(models_dir)
