"""``timm:ARCH``: any timm architecture as an encoder, when timm can be imported.

timm is an optional extra (``pip install 'napari-her2[encoders-timm]'``); it needs
torchvision, which some torch builds cannot import beside them. The weights come from the
user (``--weights FILE``, loaded strictly into ``timm.create_model(ARCH, num_classes=0)``);
the input size and mean/std come from timm's pretrained config of that architecture; tiles
are read at 0.5 µm/px (20x) unless the encoder's ``mpp`` is replaced.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import CheckpointError, ModelNotFoundError
from . import build, weights
from .encoder import Encoder, network_runner

EXTRA_HINT = "pip install 'napari-her2[encoders-timm]'"
#: µm/px of a timm encoder's tiles: timm's configs do not say
DEFAULT_MPP = 0.5


def import_timm():
    """The timm module, or a one-line error naming the extra."""
    try:
        import timm
    except (ImportError, RuntimeError, OSError) as err:  # torchvision beside another torch
        reason = " ".join(str(err).split())[:160]
        raise CheckpointError(f"timm encoders need the optional timm package, which cannot be "
                              f"imported here ({reason}): {EXTRA_HINT}") from err
    return timm


def timm_encoder(arch: str, weights_path: str | Path | None, device: str = "cpu") -> Encoder:
    """``timm.create_model(arch, num_classes=0)`` with the user's weights loaded strictly."""
    from ..predictors import resolve_device

    if not arch:
        raise ModelNotFoundError("timm: needs an architecture name, e.g. timm:vit_base_patch16_224")
    if weights_path is None:
        raise ModelNotFoundError(f"no weights given for timm:{arch}: pass --weights FILE "
                                 "(nothing is downloaded)")
    path = Path(weights_path).expanduser()
    if path.is_dir():
        path = weights.weights_in_folder(path) or path
    if not path.is_file():
        raise ModelNotFoundError(f"weights file not found: {path} (encoder timm:{arch})")
    timm = import_timm()
    try:
        net = timm.create_model(arch, pretrained=False, num_classes=0)
    except (RuntimeError, ValueError, KeyError) as err:
        raise ModelNotFoundError(f"timm has no architecture {arch!r} ({err})") from err
    build.load_strict(net, weights.read_state_dict(path), str(path), f"timm {arch}")
    cfg = getattr(net, "pretrained_cfg", None) or {}
    size = int((cfg.get("input_size") or (3, 224, 224))[-1])
    mean = tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))
    dev = resolve_device(device)
    net = net.eval().to(dev)
    return Encoder(f"timm:{arch}", weights.file_sha256(path), int(net.num_features), size,
                   DEFAULT_MPP, mean, std, "see the weights' own licence",  # type: ignore[arg-type]
                   "timm", dev.type, network_runner(net, size, mean, std, dev))
