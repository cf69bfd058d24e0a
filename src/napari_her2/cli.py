"""The ``napari-her2`` command line.

Exit codes: 0 success; 1 bad input or a failed run (one line on stderr naming the file and
the problem, never a traceback); 2 wrong usage (argparse); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence

from . import __version__
from .errors import Her2Error

log = logging.getLogger("napari_her2")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _cmd_info(args: argparse.Namespace) -> int:
    from .slide import open_slide

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slide = open_slide(args.slide, mpp=args.mpp)
    with slide:
        info = slide.summary()
    if args.json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
    else:
        sys.stdout.write(_format_info(info))
    return EXIT_OK


def _format_info(info: dict) -> str:
    mpp = info["mpp"]
    mpp_text = (
        f"{mpp['x']:.4f} x {mpp['y']:.4f} µm/px ({info['mpp_source']})"
        if mpp
        else f"unknown ({info['mpp_source']}): pass --mpp"
    )
    mag = info["magnification"]
    lines = [
        f"file:          {info['file']}",
        f"vendor:        {info['vendor']}",
        f"mpp:           {mpp_text}",
        f"magnification: {f'{mag:g}x' if mag else 'unknown'}",
        f"tile size:     {info['tile_size'][1]} x {info['tile_size'][0]} px (w x h)",
        f"compression:   {info['compression']}",
        "levels:",
    ]
    for i, lvl in enumerate(info["levels"]):
        (h, w), (dy, dx) = lvl["shape"], lvl["downsample"]
        lines.append(f"  {i}: {w} x {h} px  downsample {dx:.4g} x {dy:.4g}")
    for name, (h, w) in info["associated"].items():
        lines.append(f"associated:    {name} {w} x {h} px")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-her2", description="HER2 IHC whole-slide scoring (napari-her2)."
    )
    parser.add_argument("--version", action="version", version=f"napari-her2 {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="levels, sizes, downsamples, mpp, vendor of a slide")
    info.add_argument("slide", help="slide file (SVS, NDPI, TIFF, OME-TIFF) or DICOM folder")
    info.add_argument("--mpp", type=_positive_float, help="level-0 µm/px (overrides the file)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_cmd_info)

    from ._cli_scoring import register  # score, batch, models

    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="napari-her2: %(message)s",
    )
    for handler in logging.getLogger().handlers:  # tifffile's parse chatter; errors say it all
        handler.addFilter(lambda record: not record.name.startswith("tifffile"))
    try:
        return int(args.func(args))
    except Her2Error as err:
        sys.stderr.write(f"napari-her2: error: {err}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("napari-her2: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
