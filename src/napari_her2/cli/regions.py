"""``napari-her2 tma``: dearray a tissue microarray and score it core by core."""

from __future__ import annotations

import argparse
import sys
import warnings

from ._common import EXIT_OK, add_scoring_options, params_from_args


def grid_shape(text: str) -> tuple[int, int]:
    """argparse type of ``--grid ROWSxCOLS`` (malformed: a usage error, exit 2)."""
    from ..tma import TmaError, parse_grid

    try:
        return parse_grid(text)
    except TmaError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _cmd_tma(args: argparse.Namespace) -> int:
    from ..export.tma import write_tma_outputs
    from ..tma import score_tma

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = score_tma(args.slide, mpp=args.mpp, params=params_from_args(args),
                           shape=args.grid)
    written = write_tma_outputs(report, args.out)
    grid = report.tma
    lines = [f"{s.core.id}: {'missing' if s.core.missing else s.call.headline()}"
             for s in report.scores]
    sys.stdout.write(
        "\n".join(lines) + f"\n{report.slide_path.name}: {len(grid.present)} cores on a "
        f"{grid.shape[0]} x {grid.shape[1]} grid (rotated {grid.angle_deg:.1f}°)\n"
        + "".join(f"wrote {path}\n" for path in written.values()))
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    tma = sub.add_parser("tma", help="find the cores of a tissue microarray and score each; "
                         "writes <stem>_cores.csv and <stem>_cores.geojson")
    tma.add_argument("slide")
    tma.add_argument("--grid", type=grid_shape, default=None, metavar="ROWSxCOLS",
                     help="the array's rows and columns (default: from the cores found)")
    add_scoring_options(tma)
    tma.set_defaults(func=_cmd_tma)
