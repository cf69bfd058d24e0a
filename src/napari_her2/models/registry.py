"""A registry of model constructors shared by the plugin and the training package.

Architectures register a constructor under a stable name with :func:`register_model`;
everything else builds them by name with :func:`get_model`. The model that comes back
remembers its architecture name and its full constructor arguments (``model.arch_name``,
``model.arch_args``) so that a checkpoint can record exactly how to rebuild it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

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
    args = spec.resolve_args(kwargs)
    model = spec.builder(**args)
    resolve = getattr(model, "resolve_arch_args", None)
    model.arch_name = name
    model.arch_args = resolve(args) if callable(resolve) else args
    return model


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
