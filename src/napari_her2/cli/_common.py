"""What every subcommand shares: exit codes, and options built from the parameter limits."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..params import LIMITS, Device, Organ, ParamError, ScoringParams, Specimen, load_params

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def limited(name: str, kind: Callable[[str], Any] = float) -> Callable[[str], Any]:
    """An argparse type that parses a number and checks it against ``LIMITS[name]`` (a value
    out of range is a usage error: exit 2)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        try:
            LIMITS[name].check(name, value)
        except ParamError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value

    parse.__name__ = name
    return parse


slide_mpp = limited("slide_mpp")


def seconds(text: str) -> float:
    """An argparse type for a time limit: a positive number of seconds (else exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"the time limit must be a positive number of "
                                         f"seconds, got {text}")
    return value


def add_scoring_options(p: argparse.ArgumentParser) -> None:
    """--config and the per-parameter options; unset options keep the config's values."""
    p.add_argument("--config", metavar="FILE",
                   help="ScoringParams as JSON or TOML (a report's 'params' works too); "
                   "options given on the command line override it")
    p.add_argument("--model", default=None,
                   help="registered model name, checkpoint name or path (default: dab-cells)")
    p.add_argument("--tile-size", type=limited("tile_size", int), default=None,
                   help="tile size in px (default: the model card's; CNNs take only theirs)")
    p.add_argument("--target-mpp", type=limited("target_mpp"), default=None,
                   help="tile resolution in µm/px (default: the model card's, 0.5 = 20x; "
                        "dab-cells reads a 40x scan at 0.25)")
    p.add_argument("--mpp", type=slide_mpp, default=None,
                   help="level-0 µm/px of the slide (overrides or supplies the file's)")
    p.add_argument("--organ", choices=[o.value for o in Organ], default=None)
    p.add_argument("--specimen", choices=[s.value for s in Specimen], default=None)
    p.add_argument("--out", default="napari-her2-out", help="output folder")
    p.add_argument("--device", choices=[d.value for d in Device], default=None)
    p.add_argument("--batch-size", type=limited("batch_size", int), default=None)
    p.add_argument("--slide-model", default=None, metavar="PATH",
                   help="slide-level checkpoint (WHSPN or attention MIL) that makes the call "
                   "instead of the ASCO/CAP rule")


#: command-line option (argparse dest) -> flat ScoringParams name
_OPTION_PARAMS = {
    "model": "model_name", "tile_size": "tile_size", "target_mpp": "target_mpp",
    "organ": "organ", "specimen": "specimen", "device": "device", "batch_size": "batch_size",
    "slide_model": "slide_model",
}


def params_from_args(args: argparse.Namespace, **fixed: Any) -> ScoringParams:
    """ScoringParams from ``--config`` (or the defaults), then the options that were given,
    then ``fixed`` (settings a subcommand imposes, such as one reading thread per worker)."""
    base = load_params(args.config) if getattr(args, "config", None) else ScoringParams()
    given = {_OPTION_PARAMS[k]: v for k, v in vars(args).items()
             if k in _OPTION_PARAMS and v is not None}
    return base.with_overrides(**given, **fixed)
