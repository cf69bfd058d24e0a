"""The ``napari-her2`` command line.

Exit codes: 0 success; 1 bad input or a failed run (one line on stderr naming the file and
the problem, never a traceback); 2 wrong usage (argparse, values out of range); 130
interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import Her2Error
from ..params import ParamError
from . import features, info, regions, scoring
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE

__all__ = ["build_parser", "main"]

log = logging.getLogger("napari_her2")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-her2", description="HER2 IHC whole-slide scoring (napari-her2)."
    )
    parser.add_argument("--version", action="version", version=f"napari-her2 {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info.register(sub)
    scoring.register(sub)
    regions.register(sub)
    features.register(sub)
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
    except ParamError as err:
        sys.stderr.write(f"napari-her2: error: {err}\n")
        return EXIT_USAGE
    except Her2Error as err:
        sys.stderr.write(f"napari-her2: error: {err}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("napari-her2: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
