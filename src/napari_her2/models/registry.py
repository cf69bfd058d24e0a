"""A registry of model constructors shared by the plugin and the training package.

Architectures register a constructor under a stable name with :func:`register_model`;
everything else builds them by name with :func:`get_model`. The model that comes back
remembers its architecture name and its full constructor arguments (``model.arch_name``,
``model.arch_args``) so that a checkpoint can record exactly how to rebuild it.

Constructor arguments read from an untrusted checkpoint are checked against one table of
bounds (:data:`ARG_LIMITS`, :func:`check_arch_args`) before anything is built, and the size
of the architecture can be measured without allocating weights (:func:`estimate_parameters`
builds on torch's ``meta`` device).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
from torch import nn

from ..errors import ModelNotFoundError

logger = logging.getLogger(__name__)

ModelKind = Literal["tile", "mil", "slide"]
KINDS: tuple[str, ...] = ("tile", "mil", "slide")

F = TypeVar("F", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture.

    kind: "tile" (tile image -> class logits), "mil" (bag of tiles -> bag logits and
    attention) or "slide" (slide-level class-fraction vector -> slide score).
    """

    name: str
    builder: Callable[..., nn.Module]
    kind: str
    summary: str
    source: str

    def default_args(self) -> dict[str, Any]:
        """Keyword arguments of the constructor with their defaults."""
        sig = inspect.signature(self.builder)
        return {
            k: p.default
            for k, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    def resolve_args(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Full argument dict (defaults filled in); TypeError on unknown/missing ones."""
        bound = inspect.signature(self.builder).bind(**kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)


_REGISTRY: dict[str, ModelSpec] = {}


@dataclass(frozen=True)
class ArgLimit:
    """Bounds of one constructor argument: each number within [low, high]; a sequence
    argument has at most ``max_len`` entries."""

    low: float
    high: float
    max_len: int = 8


#: bounds of the constructor arguments of every registered architecture, by argument name
ARG_LIMITS: dict[str, ArgLimit] = {
    "num_classes": ArgLimit(1, 1000),
    "in_features": ArgLimit(1, 65_536),
    "in_channels": ArgLimit(1, 16),
    "input_size": ArgLimit(16, 1024),
    "widths": ArgLimit(1, 2048),
    "depths": ArgLimit(1, 32),
    "kernel_sizes": ArgLimit(1, 31),
    "units": ArgLimit(1, 32),
    "hidden": ArgLimit(1, 65_536),
    "embed_dim": ArgLimit(1, 65_536),
    "attn_dim": ArgLimit(1, 65_536),
    "n_support_vectors": ArgLimit(0, 1_000_000),
    "n_fitted_classes": ArgLimit(0, 1000),
    "degree": ArgLimit(0, 10),
    "dropout": ArgLimit(0.0, 1.0),
    "gamma": ArgLimit(0.0, 1e6),
    "C": ArgLimit(0.0, 1e6),
    "coef0": ArgLimit(-1e6, 1e6),
}
#: bounds of any numeric argument not in :data:`ARG_LIMITS`
DEFAULT_LIMIT = ArgLimit(-1_000_000, 1_000_000, max_len=64)
#: longest string argument, deepest nesting (``backbone_args``), most arguments
MAX_ARG_STRING = 128
MAX_ARG_DEPTH = 3
MAX_ARGS = 64
#: largest architecture a checkpoint may ask for, parameters and buffers (0.8 GB in float32)
MAX_PARAMETERS = 200_000_000


def register_model(name: str, *, kind: ModelKind = "tile", source: str = "") -> Callable[[F], F]:
    """Decorator registering a model constructor (a class or a function) under ``name``.

    The constructor's docstring's first line becomes the summary. Registering a name twice
    raises ``ValueError``: names are part of the checkpoint format and must stay unique.
    """
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, not {kind!r}")

    def decorator(builder: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is already registered")
        doc = inspect.getdoc(builder) or ""
        summary = doc.strip().splitlines()[0] if doc.strip() else name
        _REGISTRY[name] = ModelSpec(name, builder, kind, summary, source)
        logger.debug("registered model %s (%s)", name, kind)
        return builder

    return decorator


def list_models(kind: str | None = None) -> list[str]:
    """Sorted names of the registered architectures, optionally of one kind only."""
    return sorted(n for n, s in _REGISTRY.items() if kind is None or s.kind == kind)


def model_spec(name: str) -> ModelSpec:
    """The registry entry of ``name``; :class:`ModelNotFoundError` if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_models()) or "none"
        raise ModelNotFoundError(
            f"no architecture named {name!r} is registered (registered: {known})"
        ) from None


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the architecture registered as ``name`` with constructor arguments ``kwargs``.

    The model records ``arch_name`` and ``arch_args`` (all arguments, defaults included; a
    model may complete them with a ``resolve_arch_args(args)`` method, as ``abmil`` does for
    its backbone). Raises :class:`ModelNotFoundError` for an unknown name and
    ``TypeError``/``ValueError`` for arguments the constructor does not accept.
    """
    spec = model_spec(name)
    check_arch_args(kwargs)
    args = spec.resolve_args(kwargs)
    model = spec.builder(**args)
    resolve = getattr(model, "resolve_arch_args", None)
    record_arch(model, name, resolve(args) if callable(resolve) else args)
    return model


def record_arch(model: nn.Module, name: str, args: dict[str, Any]) -> None:
    """Record the architecture name and constructor arguments that :func:`arch_info` reads
    back (and a checkpoint stores) on ``model``."""
    # nn.Module types its attributes as tensors or modules; these are plain values
    model.arch_name = name  # type: ignore[assignment]
    model.arch_args = args  # type: ignore[assignment]


def arch_info(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """(architecture name, constructor arguments) recorded on a model by :func:`get_model`."""
    name = getattr(model, "arch_name", None)
    args = getattr(model, "arch_args", None)
    if not isinstance(name, str) or not isinstance(args, dict):
        raise ValueError(
            f"{type(model).__name__} was not built with napari_her2.models.get_model, so its "
            "architecture and arguments are unknown; build it with get_model(name, **args)"
        )
    return name, dict(args)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable and frozen parameters (buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def check_arch_args(args: Mapping[str, Any], where: str = "arch_args") -> None:
    """Refuse constructor arguments beyond the bounds of :data:`ARG_LIMITS` (ValueError).

    Numbers must be finite and within their argument's bounds (:data:`DEFAULT_LIMIT` for
    names not in the table), sequences short, strings short, nested dicts shallow.
    """
    _check_args(args, where, 0)


def _check_args(args: Mapping[str, Any], where: str, depth: int) -> None:
    if not isinstance(args, Mapping):
        raise ValueError(f"{where} must be a dict")
    if depth > MAX_ARG_DEPTH:
        raise ValueError(f"{where} is nested deeper than {MAX_ARG_DEPTH} levels")
    if len(args) > MAX_ARGS:
        raise ValueError(f"{where} has {len(args)} entries, at most {MAX_ARGS} allowed")
    for key, value in args.items():
        _check_arg(str(key), value, f"{where}.{key}", depth)


def _check_arg(name: str, value: Any, where: str, depth: int) -> None:
    limit = ARG_LIMITS.get(name, DEFAULT_LIMIT)
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if len(value) > MAX_ARG_STRING:
            raise ValueError(f"{where} is longer than {MAX_ARG_STRING} characters")
    elif isinstance(value, int | float):
        _check_number(value, limit, where)
    elif isinstance(value, list | tuple):
        if len(value) > limit.max_len:
            raise ValueError(f"{where} has {len(value)} entries, at most {limit.max_len}")
        for item in value:
            if not isinstance(item, int | float) or isinstance(item, bool):
                raise ValueError(f"{where} must hold numbers, got {type(item).__name__}")
            _check_number(item, limit, where)
    elif isinstance(value, Mapping):
        _check_args(value, where, depth + 1)
    else:
        raise ValueError(f"{where} has an unsupported type {type(value).__name__}")


def _check_number(value: float, limit: ArgLimit, where: str) -> None:
    finite = isinstance(value, int) or math.isfinite(value)  # no float() of a huge int
    if not finite or not limit.low <= value <= limit.high:
        raise ValueError(f"{where} = {_show(value)} is outside {limit.low:g}..{limit.high:g}")


def _show(value: float) -> str:
    """A short text for a number, however large."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


def estimate_parameters(name: str, **kwargs: Any) -> int:
    """Parameter count of ``get_model(name, **kwargs)`` without allocating any weight
    (the model is built on torch's ``meta`` device); errors as :func:`get_model`."""
    with torch.device("meta"):
        return count_parameters(get_model(name, **kwargs))
