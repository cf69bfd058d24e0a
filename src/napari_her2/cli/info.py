"""``napari-her2 info``: levels, sizes, downsamples, mpp and vendor of a slide."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from ._common import EXIT_OK, slide_mpp


def register(sub: argparse._SubParsersAction) -> None:
    info = sub.add_parser("info", help="levels, sizes, downsamples, mpp, vendor of a slide")
    info.add_argument("slide", help="slide file (SVS, NDPI, TIFF, OME-TIFF, PNG, JPEG) or "
                      "DICOM folder")
    info.add_argument("--mpp", type=slide_mpp, help="level-0 µm/px (overrides the file)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from ..slide import open_slide

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
