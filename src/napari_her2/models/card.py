"""The model card: what a checkpoint is, how to feed it, and where it came from.

A :class:`ModelCard` travels as JSON inside the safetensors metadata of every checkpoint
(see :mod:`napari_her2.models.checkpoint`). It is validated when built, so a card that
reached the rest of the code is well-formed; whether it matches the weights is checked by
``load_checkpoint``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..classes import canonical_class

CARD_FORMAT_VERSION = 1
NOT_FOR_DIAGNOSIS = "Research use only; not for diagnosis."
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "classes", tuple(self.classes))
        set_(self, "mean", tuple(float(v) for v in self.mean))
        set_(self, "std", tuple(float(v) for v in self.std))
        set_(self, "arch_args", _plain_json(self.arch_args, "arch_args"))
        set_(self, "metrics", _plain_json(self.metrics, "metrics"))
        if not self.name:
            set_(self, "name", self.architecture)
        self._validate()

    def _validate(self) -> None:
        _check(isinstance(self.architecture, str) and self.architecture, "architecture is empty")
        _check(len(self.classes) > 0, "classes is empty")
        _check(all(isinstance(c, str) for c in self.classes), "class names must be strings")
        _check(len(set(self.classes)) == len(self.classes), f"duplicate classes {self.classes}")
        for c in self.classes:
            canonical_class(c)  # ValueError names the class that maps to no HER2 outcome
        if self.input_size is not None:
            _check(
                _is_int(self.input_size) and self.input_size > 0,
                f"input_size must be a positive integer, got {self.input_size!r}",
            )
        if self.target_mpp is not None:
            _check(
                _is_num(self.target_mpp) and self.target_mpp > 0,
                f"target_mpp must be a positive number, got {self.target_mpp!r}",
            )
        _check(len(self.mean) == len(self.std) > 0, "mean and std need one value per channel")
        _check(all(math.isfinite(v) for v in self.mean), "mean must be finite")
        _check(all(math.isfinite(v) and v > 0 for v in self.std), "std must be positive")
        _check(
            self.sha256 == "" or bool(_SHA256.match(self.sha256)),
            "sha256 must be 64 lowercase hex digits",
        )
        _check(
            self.format_version == CARD_FORMAT_VERSION,
            f"unsupported card format_version {self.format_version!r}",
        )
        for text in (
            "name",
            "description",
            "training_data",
            "provenance",
            "intended_use",
            "software_version",
        ):
            _check(isinstance(getattr(self, text), str), f"{text} must be a string")

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key in ("classes", "mean", "std"):
            out[key] = list(out[key])
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
        _check(not unknown, f"unknown model card field(s): {', '.join(unknown)}")
        missing = [k for k in ("architecture", "classes") if k not in data]
        _check(not missing, f"model card lacks {', '.join(missing)}")
        _check(isinstance(data["classes"], list | tuple), "classes must be a list")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse :meth:`to_json` output; ValueError on invalid JSON or an invalid card."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"model card is not valid JSON ({err.msg} at char {err.pos})"
            ) from None
        return cls.from_dict(data)


def _plain_json(value: Any, what: str) -> dict[str, Any]:
    """The dict as JSON gives it back (tuples become lists); ValueError if not JSON-able."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a dict")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be plain JSON: {err}") from None


def _check(ok: object, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
