"""How a slide is scored: one nested, typed, serialisable configuration.

:class:`ScoringParams` groups the settings of each step: ``tissue`` (the mask),
``grid`` (tile size and resolution: ``None`` means the model card's own), ``model`` (which
tile scorer, on which device, in what batches) and ``call`` (organ, specimen and the slide
call: the guideline rule or a slide-level checkpoint with its Monte-Carlo sampling). Every
numeric limit is defined once, in :data:`LIMITS`; the CLI, ``--config`` files, the widget's
magicgui controls and the dataclasses themselves all read it.

The report stores ``params.to_dict()``; :meth:`ScoringParams.from_dict` and
:func:`load_params` read it back (JSON or TOML), so a run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import Her2Error
from .ihc.tissue import TissueParams

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "LIMITS",
    "CallParams",
    "Device",
    "GridParams",
    "Limit",
    "ModelParams",
    "Organ",
    "ParamError",
    "ScoringParams",
    "Specimen",
    "load_params",
]


class ParamError(Her2Error, ValueError):
    """A scoring parameter is out of range or unknown (a usage error)."""


class Organ(str, enum.Enum):
    """Which guideline scores the slide (ASCO/CAP breast or gastric / gastro-oesophageal)."""

    BREAST = "breast"
    GASTRIC = "gastric"


class Specimen(str, enum.Enum):
    """Resections count tile fractions; gastric biopsies count a cluster of stained cells."""

    RESECTION = "resection"
    BIOPSY = "biopsy"


class Device(str, enum.Enum):
    """Where a torch model runs; ``auto`` picks cuda, then mps, then cpu."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


@dataclass(frozen=True)
class Limit:
    """Allowed range of one numeric parameter, with its label and unit for forms and help."""

    lo: float
    hi: float
    label: str
    unit: str = ""
    step: float | None = None

    def check(self, name: str, value: float) -> None:
        if not (isinstance(value, int | float) and math.isfinite(value)
                and self.lo <= value <= self.hi):
            unit = f" {self.unit}" if self.unit else ""
            raise ParamError(f"{name.replace('_', ' ')} must be {self.lo:g}-{self.hi:g}{unit}, "
                             f"got {value!r}")


#: every numeric limit, defined once
LIMITS: dict[str, Limit] = {
    "tile_size": Limit(16, 1024, "Tile size", "px", 16),
    "target_mpp": Limit(0.05, 50.0, "Tile resolution", "µm/px", 0.05),
    "slide_mpp": Limit(0.02, 50.0, "Slide µm/px", "µm/px", 0.01),
    "min_tissue": Limit(0.0, 1.0, "Minimum tissue per tile", "", 0.05),
    "batch_size": Limit(1, 4096, "Batch size", "tiles"),
    "workers": Limit(0, 64, "Reading threads"),
    "seed": Limit(0, 2**32 - 1, "Random seed"),
    "n_samples": Limit(10, 100_000, "Monte-Carlo samples"),
    "n_bags": Limit(1, 10_000, "MIL bags"),
    "bag_size": Limit(1, 100_000, "Tiles per MIL bag"),
}


def _check_fields(obj: Any) -> None:
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name in LIMITS and value is not None:
            LIMITS[f.name].check(f.name, value)


def _enum(kind: type[enum.Enum], value: Any, name: str) -> Any:
    try:
        return kind(value.value if isinstance(value, enum.Enum) else value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise ParamError(f"{name} must be one of {allowed}, got {value!r}") from None


@dataclass(frozen=True)
class GridParams:
    """Tile geometry. None = what the model card says (the weight-free scorer accepts any
    size and resolution; a CNN only its card's)."""

    tile_size: int | None = None
    target_mpp: float | None = None
    min_tissue: float = 0.25

    def __post_init__(self) -> None:
        _check_fields(self)


@dataclass(frozen=True)
class ModelParams:
    """The tile scorer: a registry name, a checkpoint name or a checkpoint path."""

    name: str = "dab-cells"
    device: Device = Device.AUTO
    batch_size: int = 32
    workers: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", _enum(Device, self.device, "device"))
        _check_fields(self)


@dataclass(frozen=True)
class CallParams:
    """How tile results become the slide call.

    slide_model: a WHSPN or attention-MIL checkpoint that makes the call instead of the
    guideline rule (None). n_samples: Monte-Carlo readings of the tile classes behind the
    rule's confidence; n_bags / bag_size: the attention-MIL Monte-Carlo bags (None = the
    model's defaults).
    """

    organ: Organ = Organ.BREAST
    specimen: Specimen = Specimen.RESECTION
    seed: int = 0
    n_samples: int = 1000
    slide_model: str | None = None
    n_bags: int | None = None
    bag_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "organ", _enum(Organ, self.organ, "organ"))
        object.__setattr__(self, "specimen", _enum(Specimen, self.specimen, "specimen"))
        _check_fields(self)


#: flat names (CLI options, ``score_slide(**overrides)``) -> (section, field)
FLAT_NAMES: dict[str, tuple[str, str]] = {
    **{f.name: ("grid", f.name) for f in fields(GridParams)},
    **{f.name: ("model", f.name) for f in fields(ModelParams) if f.name != "name"},
    "model_name": ("model", "name"),
    **{f.name: ("call", f.name) for f in fields(CallParams)},
}


@dataclass(frozen=True)
class ScoringParams:
    """Everything that decides how a slide is scored (see the module docstring)."""

    tissue: TissueParams = field(default_factory=TissueParams)
    grid: GridParams = field(default_factory=GridParams)
    model: ModelParams = field(default_factory=ModelParams)
    call: CallParams = field(default_factory=CallParams)

    def with_overrides(self, **flat: Any) -> ScoringParams:
        """A copy with flat-named fields changed (``tile_size=128, organ="gastric"``)."""
        unknown = sorted(set(flat) - set(FLAT_NAMES))
        if unknown:  # a misspelt keyword argument, as Python itself reports one
            raise TypeError(f"unknown scoring parameter(s): {', '.join(unknown)}")
        sections: dict[str, dict[str, Any]] = {}
        for name, value in flat.items():
            section, key = FLAT_NAMES[name]
            sections.setdefault(section, {})[key] = value
        return replace(self, **{s: replace(getattr(self, s), **kw) for s, kw in sections.items()})

    def flat(self) -> dict[str, Any]:
        """Flat name -> plain value of every section's fields except ``tissue``."""
        plain = self.to_dict()
        return {name: plain[section][key] for name, (section, key) in FLAT_NAMES.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (enums as their values)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=_plain))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoringParams:
        """Inverse of :meth:`to_dict`; missing keys keep their defaults, unknown keys are an
        error (a typo must not be ignored silently)."""
        if not isinstance(data, dict):
            raise ParamError("scoring parameters must be a table/object of sections")
        kinds = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(kinds))
        if unknown:
            raise ParamError(f"unknown section(s) {', '.join(unknown)}; expected "
                             f"{', '.join(kinds)}")
        built = {}
        for name, section in data.items():
            kind = type(getattr(cls(), name))
            if not isinstance(section, dict):
                raise ParamError(f"section {name!r} must be a table/object")
            allowed = {f.name for f in fields(kind)}
            bad = sorted(set(section) - allowed)
            if bad:
                raise ParamError(f"unknown field(s) in {name}: {', '.join(bad)}")
            try:
                built[name] = kind(**section)
            except TypeError as err:
                raise ParamError(f"section {name!r}: {err}") from None
        return cls(**built)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-able: {value!r}")


def load_params(path: str | os.PathLike) -> ScoringParams:
    """ScoringParams from a JSON or TOML file (by suffix); a slide report's ``params`` object
    works as a JSON config. One-line :class:`ParamError` naming the file on any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ParamError(f"{p}: cannot read the config file ({err.strerror or err})") from err
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise ParamError(f"{p}: not valid {'TOML' if p.suffix.lower() == '.toml' else 'JSON'} "
                         f"({str(err).splitlines()[0]})") from None
    if isinstance(data, dict) and "params" in data and "score" in data:
        data = data["params"]  # a slide report
    try:
        return ScoringParams.from_dict(data)
    except ParamError as err:
        raise ParamError(f"{p}: {err}") from None
