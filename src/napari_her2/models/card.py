"""The model card: what a checkpoint is, how to feed it, and where it came from.

A :class:`ModelCard` travels as JSON inside the safetensors metadata of every checkpoint
(see :mod:`napari_her2.models.checkpoint`). It is validated when built, so a card that
reached the rest of the code is well-formed and within sane bounds (the limits below, and
:data:`napari_her2.models.registry.ARG_LIMITS` for the architecture's arguments); whether it
matches the weights is checked by ``load_checkpoint``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .._version import __version__
from ..classes import canonical_class
from .calibration import temperature_in
from .registry import check_arch_args

CARD_FORMAT_VERSION = 1
NOT_FOR_DIAGNOSIS = "Research use only; not for diagnosis."
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: bounds of a valid card (a card read from a file is untrusted input)
INPUT_SIZE_RANGE = (16, 1024)  # pixels
MPP_RANGE = (0.05, 50.0)  # microns per pixel
CHANNELS = 3  # RGB: one mean and one std per channel
NORM_BOUND = 1000.0  # |mean| and std at most this
MAX_CLASSES = 32
MAX_SHORT_TEXT = 200  # architecture, name, class names, software_version
MAX_TEXT = 20_000  # description, training_data, provenance, intended_use
MAX_METRICS_CHARS = 64 * 1024  # metrics as JSON
MAX_CARD_CHARS = 256 * 1024  # the whole card as JSON
MAX_JSON_DEPTH = 8  # nesting of the card's JSON (arch_args, metrics)
MAX_DIM = 1 << 16  # an encoder's embedding size
MAX_PATCH0 = 1 << 16  # an encoder's patch side in level-0 pixels
#: what a slide model's card says of the encoder whose tile embeddings it was trained on
ENCODER_KEYS = ("name", "sha256", "dim", "mpp", "patch_size_level0", "input_px")
_SHORT_TEXT = ("architecture", "name", "software_version")
_LONG_TEXT = ("description", "training_data", "provenance", "intended_use")


@dataclass(frozen=True)
class ModelCard:
    """Self-description of a checkpoint.

    architecture / arch_args: registry name and constructor arguments (``get_model``).
    classes: output class names in output order; each maps onto a HER2 tile outcome
        (see :func:`napari_her2.classes.canonical_class`).
    input_size: square tile side (pixels) the model expects; None for non-image models.
    target_mpp: microns per pixel the tiles are read at; None when unknown/not relevant.
    mean / std: per-channel normalisation applied to RGB scaled to [0, 1].
    name: display name (defaults to the architecture); description: free text.
    training_data / provenance: what it was trained on and how (dataset, split, commit).
    metrics: named evaluation results; intended_use: limits and intended use.
    software_version: napari-her2 version that wrote the card.
    sha256: hash of the weights (filled in by ``save_checkpoint``; "" before).
    encoder: for a MIL model trained on tile embeddings, the encoder that made them:
        ``name`` and ``sha256`` of its weights (both required), ``dim`` (embedding size),
        ``mpp`` (µm/px of the tiles it embedded), ``patch_size_level0`` (their side in
        level-0 pixels) and ``input_px`` (the encoder's input side); None for other models.
        Left out of the JSON when None, so cards without it read as before.
    """

    architecture: str
    classes: tuple[str, ...]
    arch_args: dict[str, Any] = field(default_factory=dict)
    input_size: int | None = None
    target_mpp: float | None = None
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    name: str = ""
    description: str = ""
    training_data: str = ""
    provenance: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    intended_use: str = NOT_FOR_DIAGNOSIS
    software_version: str = __version__
    sha256: str = ""
    format_version: int = CARD_FORMAT_VERSION
    encoder: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _check(isinstance(self.classes, list | tuple), "classes must be a list")
        _check(len(self.classes) <= MAX_CLASSES, f"more than {MAX_CLASSES} classes")
        set_(self, "classes", tuple(self.classes))
        set_(self, "mean", _channel_values(self.mean, "mean"))
        set_(self, "std", _channel_values(self.std, "std"))
        set_(self, "arch_args", _plain_json(self.arch_args, "arch_args"))
        set_(self, "metrics", _plain_json(self.metrics, "metrics"))
        if self.encoder is not None:
            set_(self, "encoder", _plain_json(self.encoder, "encoder"))
        if not self.name:
            set_(self, "name", self.architecture)
        self._validate()

    def _validate(self) -> None:
        self._validate_text()
        _check(self.architecture, "architecture is empty")
        self._validate_classes()
        check_arch_args(self.arch_args)
        _check(
            len(json.dumps(self.metrics)) <= MAX_METRICS_CHARS,
            f"metrics are larger than {MAX_METRICS_CHARS} characters as JSON",
        )
        temperature_in(self.metrics)  # ValueError on a malformed calibration temperature
        self._validate_geometry()
        if self.encoder is not None:
            _check_encoder(self.encoder, self.arch_args)
        _check(all(v > 0 for v in self.std), "std must be positive")
        _check(
            isinstance(self.sha256, str) and (self.sha256 == "" or _SHA256.match(self.sha256)),
            "sha256 must be 64 lowercase hex digits",
        )
        _check(
            _is_int(self.format_version) and self.format_version == CARD_FORMAT_VERSION,
            f"unsupported card format_version {_short(self.format_version)}",
        )

    def _validate_text(self) -> None:
        for names, limit in ((_SHORT_TEXT, MAX_SHORT_TEXT), (_LONG_TEXT, MAX_TEXT)):
            for text in names:
                value = getattr(self, text)
                _check(isinstance(value, str), f"{text} must be a string")
                _check(len(value) <= limit, f"{text} is longer than {limit} characters")

    def _validate_classes(self) -> None:
        _check(len(self.classes) > 0, "classes is empty")
        _check(all(isinstance(c, str) for c in self.classes), "class names must be strings")
        _check(
            all(len(c) <= MAX_SHORT_TEXT for c in self.classes),
            f"a class name is longer than {MAX_SHORT_TEXT} characters",
        )
        _check(len(set(self.classes)) == len(self.classes), f"duplicate classes {self.classes}")
        for c in self.classes:
            canonical_class(c)  # ValueError names the class that maps to no HER2 outcome

    def _validate_geometry(self) -> None:
        lo, hi = INPUT_SIZE_RANGE
        if self.input_size is not None:
            _check(
                _is_int(self.input_size) and lo <= self.input_size <= hi,
                f"input_size must be an integer in {lo}..{hi} pixels, got {_short(self.input_size)}",
            )
        lo_mpp, hi_mpp = MPP_RANGE
        if self.target_mpp is not None:
            _check(
                _is_num(self.target_mpp) and lo_mpp <= self.target_mpp <= hi_mpp,
                f"target_mpp must be a number in {lo_mpp}..{hi_mpp} um/px, "
                f"got {_short(self.target_mpp)}",
            )

    @property
    def temperature(self) -> float | None:
        """The calibration temperature (``metrics["calibration"]["temperature"]``) the
        plugin divides this model's logits by; None when the card has none."""
        return temperature_in(self.metrics)

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key in ("classes", "mean", "std"):
            out[key] = list(out[key])
        if out["encoder"] is None:
            del out["encoder"]
        return out

    def to_json(self) -> str:
        """Compact, key-sorted JSON."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Build from a dict; ValueError on unknown or missing fields or bad values."""
        if not isinstance(data, dict):
            raise ValueError("model card must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        _check(not unknown, f"unknown model card field(s): {_few(unknown)}")
        missing = [k for k in ("architecture", "classes") if k not in data]
        _check(not missing, f"model card lacks {', '.join(missing)}")
        _check(isinstance(data["classes"], list | tuple), "classes must be a list")
        try:
            return cls(**data)
        except TypeError as err:  # a field of the wrong type, e.g. mean given as a number
            raise ValueError(f"model card has a field of the wrong type ({err})") from None

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse :meth:`to_json` output; ValueError on invalid, oversized or too deeply
        nested JSON, or an invalid card."""
        _check(isinstance(text, str), "model card must be JSON text")
        _check(
            len(text) <= MAX_CARD_CHARS, f"model card is larger than {MAX_CARD_CHARS} characters"
        )
        return cls.from_dict(parse_json(text, "model card"))


def _check_encoder(enc: dict[str, Any], arch_args: dict[str, Any]) -> None:
    """ValueError unless ``enc`` is a well-formed encoder block (see :class:`ModelCard`)
    whose ``dim`` agrees with the architecture's ``in_features`` when both are given."""
    unknown = sorted(set(enc) - set(ENCODER_KEYS))
    _check(not unknown, f"unknown encoder field(s): {_few(unknown)}")
    name, sha = enc.get("name"), enc.get("sha256")
    _check(isinstance(name, str) and 0 < len(name) <= MAX_SHORT_TEXT,
           f"encoder name must be 1..{MAX_SHORT_TEXT} characters")
    _check(isinstance(sha, str) and _SHA256.match(sha),
           "encoder sha256 must be 64 lowercase hex digits")
    lo, hi = INPUT_SIZE_RANGE
    for key, low, high in (("dim", 1, MAX_DIM), ("patch_size_level0", 1, MAX_PATCH0),
                           ("input_px", lo, hi)):
        value = enc.get(key)
        _check(value is None or (_is_int(value) and low <= value <= high),
               f"encoder {key} must be an integer in {low}..{high}, got {_short(value)}")
    mpp = enc.get("mpp")
    _check(mpp is None or (_is_num(mpp) and MPP_RANGE[0] <= mpp <= MPP_RANGE[1]),
           f"encoder mpp must be a number in {MPP_RANGE[0]}..{MPP_RANGE[1]} um/px, "
           f"got {_short(mpp)}")
    dim, wanted = enc.get("dim"), arch_args.get("in_features")
    _check(dim is None or wanted is None or dim == wanted,
           f"encoder dim {dim} differs from the model's in_features {_short(wanted)}")


def parse_json(text: str | bytes, what: str) -> Any:
    """``json.loads`` for untrusted text: ValueError (one line) on invalid JSON, on NaN or
    infinite numbers, and on nesting deeper than :data:`MAX_JSON_DEPTH`."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not valid UTF-8 JSON") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} is not valid JSON ({err.msg} at char {err.pos})") from None
    except ValueError as err:  # a NaN/Infinity constant, an integer of thousands of digits
        raise ValueError(f"{what} is not acceptable JSON ({_short(str(err), 80)})") from None
    _check_depth(data, what)
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _check_depth(value: Any, what: str) -> None:
    """ValueError when containers nest deeper than :data:`MAX_JSON_DEPTH` (no recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            _check(depth < MAX_JSON_DEPTH, f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _plain_json(value: Any, what: str) -> dict[str, Any]:
    """The dict as JSON gives it back (tuples become lists); ValueError if not JSON-able."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a dict")
    _check_depth(value, what)
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be plain JSON: {err}") from None


def _channel_values(values: Any, what: str) -> tuple[float, ...]:
    """One finite float per RGB channel, each within +-NORM_BOUND; ValueError otherwise."""
    _check(
        isinstance(values, list | tuple) and len(values) == CHANNELS,
        f"mean and std need {CHANNELS} values each (one per RGB channel), "
        f"{what} got {_short(values)}",
    )
    _check(
        all(_is_num(v) and abs(v) <= NORM_BOUND for v in values),
        f"{what} must hold finite numbers within {NORM_BOUND:g}",
    )
    return tuple(float(v) for v in values)


def _short(value: Any, limit: int = 40) -> str:
    """``repr`` cut to ``limit`` characters (never raises for huge integers)."""
    try:
        text = repr(value)
    except ValueError:  # an integer beyond Python's digit limit
        return "(a huge number)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _few(items: list[str], n: int = 3) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(_short(i, 40) for i in items[:n]) + more


def _check(ok: object, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    """A finite int or float (not a bool); never raises, even for huge integers."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return isinstance(v, int) or math.isfinite(v)
