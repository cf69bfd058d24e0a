"""``napari-her2 score``, ``batch`` and ``models``: the scoring subcommands of the CLI."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .cli import EXIT_ERROR, EXIT_OK, _positive_float
from .pipeline import ORGANS, SPECIMENS, ScoringParams


def _add_scoring_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="dab-membrane",
                   help="registered model name or checkpoint path (default: dab-membrane)")
    p.add_argument("--tile-size", type=int, default=256, help="tile size in px (default 256)")
    p.add_argument("--target-mpp", type=_positive_float, default=None,
                   help="tile resolution in µm/px (default: the model's, 0.5 = 20x)")
    p.add_argument("--mpp", type=_positive_float, default=None,
                   help="level-0 µm/px of the slide (overrides or supplies the file's)")
    p.add_argument("--organ", choices=ORGANS, default="breast")
    p.add_argument("--specimen", choices=SPECIMENS, default="resection")
    p.add_argument("--out", default="napari-her2-out", help="output folder")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--slide-model", default=None, metavar="PATH",
                   help="slide-level checkpoint (WHSPN or attention MIL) that makes the call "
                   "instead of the ASCO/CAP rule")


def _params(args: argparse.Namespace, workers: int = 2) -> ScoringParams:
    return ScoringParams(tile_size=args.tile_size, target_mpp=args.target_mpp, organ=args.organ,
                         specimen=args.specimen, device=args.device,
                         batch_size=args.batch_size, workers=workers,
                         slide_model=args.slide_model)


def _add_score_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", action="store_true", help="also write <stem>.csv, one row per tile")


def _cmd_score(args: argparse.Namespace) -> int:
    from .pipeline import score_slide, write_outputs

    params = _params(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = score_slide(args.slide, args.model, mpp=args.mpp, params=params)
    written = write_outputs(report, args.out, csv=args.csv)
    data = report.to_dict()
    conf = data.get("confidence")
    conf_text = f", confidence {conf:.2f}" if isinstance(conf, int | float) else ""
    call = (f"HER2 {data['score']} ({data['category']}){conf_text} by {data['method']}"
            if data["score"] is not None else "no tumour tiles found, no HER2 score")
    sys.stdout.write(
        f"{Path(args.slide).name}: {call}; "
        f"{data['n_scored_tiles']} tissue tiles in {data['timings']['total']:.1f} s"
        f"{'; STAIN CHECK FAILED (see warning)' if data['warnings'] else ''}\n"
        + "".join(f"wrote {path}\n" for path in written.values())
    )
    return EXIT_OK


def _cmd_batch(args: argparse.Namespace) -> int:
    from .batch import expand_paths, score_cohort

    paths = expand_paths(args.paths)
    if not paths:
        sys.stderr.write("napari-her2: error: no slides found in the given paths\n")
        return EXIT_ERROR

    def show(row: dict) -> None:
        if row["status"] == "ok":
            sys.stdout.write(f"{row['slide']}: HER2 {row['score']} ({row['category']})\n")
        else:
            sys.stderr.write(f"napari-her2: error: {row['error']}\n")

    rows = score_cohort(paths, args.out, model=args.model, params=_params(args, workers=1),
                        mpp=args.mpp, scheduler=args.scheduler, n_workers=args.workers,
                        on_result=show)
    failed = sum(r["status"] != "ok" for r in rows)
    sys.stdout.write(f"{len(rows) - failed} of {len(rows)} slides scored; "
                     f"summary in {Path(args.out) / 'batch_summary.csv'}\n")
    return EXIT_OK if failed == 0 else EXIT_ERROR


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import describe_models

    entries = describe_models()
    if args.json:
        sys.stdout.write(json.dumps(entries, indent=2, default=str) + "\n")
        return EXIT_OK
    for e in entries:
        kind = e.get("kind", "")
        summary = e.get("summary") or e.get("card", {}).get("summary", "")
        sys.stdout.write(f"{e.get('name')}  [{kind}]  {summary}\n")
        if e.get("path"):
            sys.stdout.write(f"    {e['path']}\n")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    import os

    from ._sample_data import sample_slide_path

    path = sample_slide_path()
    gui = args.gui or (not args.headless and bool(os.environ.get("DISPLAY")))
    if not gui:
        sys.stdout.write(f"no display: scoring the sample slide headless ({path})\n")
        args.slide = str(path)
        return _cmd_score(args)
    if not os.environ.get("DISPLAY"):
        sys.stderr.write("napari-her2: error: --gui needs a display (DISPLAY is not set)\n")
        return EXIT_ERROR
    import napari

    viewer = napari.Viewer(title="napari-her2 demo")
    viewer.open(str(path), plugin="napari-her2")
    _, widget = viewer.window.add_plugin_dock_widget("napari-her2", "HER2 scoring")
    widget.start_scoring()
    napari.run()
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="score the built-in IHC sample slide with dab-membrane "
                          "(in napari when a display is available)")
    _add_scoring_options(demo)
    _add_score_outputs(demo)
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument("--gui", action="store_true", help="open napari (needs a display)")
    mode.add_argument("--headless", action="store_true", help="score without napari")
    demo.set_defaults(func=_cmd_demo, mpp=None)

    score = sub.add_parser("score", help="score one slide; writes <stem>.geojson and <stem>.json")
    score.add_argument("slide")
    _add_scoring_options(score)
    _add_score_outputs(score)
    score.set_defaults(func=_cmd_score)

    batch = sub.add_parser("batch", help="score many slides on a dask cluster")
    batch.add_argument("paths", nargs="+", help="slide files or folders of slides")
    _add_scoring_options(batch)
    batch.add_argument("--scheduler", help="address of a dask.distributed scheduler")
    batch.add_argument("--workers", type=int, default=None, help="local worker processes")
    batch.set_defaults(func=_cmd_batch)

    models = sub.add_parser("models", help="registered models and checkpoints with their cards")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=_cmd_models)

