"""``napari-her2 score``, ``batch``, ``evaluate``, ``models`` and ``demo``."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..cohort.batch import DEFAULT_TIMEOUT_S
from ._common import EXIT_ERROR, EXIT_OK, add_scoring_options, params_from_args, seconds

if TYPE_CHECKING:
    from ..run.pipeline import SlideReport


def _add_score_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", action="store_true",
                   help="also write <stem>.csv, one row per tile, and <stem>.cells.csv, one "
                        "row per cell (when the scorer finds cells)")
    p.add_argument("--report", action="store_true",
                   help="also write the one-page report <stem>.report.png and .pdf (A4)")


def _cmd_score(args: argparse.Namespace) -> int:
    from ..export import write_outputs
    from ..export.atomic import safe_stem, sweep_stale_temps
    from ..run.pipeline import score_slide

    params = params_from_args(args)
    sweep_stale_temps(args.out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = score_slide(args.slide, mpp=args.mpp, params=params, region=args.roi)
    with report.slide:
        written = write_outputs(args.out, safe_stem(report.stem), report.to_dict(),
                                report.results, csv=args.csv)
        if args.report:
            from ..export.report_page import write_report_page

            page = Path(args.out) / f"{safe_stem(report.stem)}.report"
            written["report_png"], written["report_pdf"] = write_report_page(report, page)
    sys.stdout.write(
        f"{Path(args.slide).name}: {report.call.headline()}; "
        f"{len(report.results)} tissue tiles in {report.timings.total:.1f} s\n"
        + _faint_line(report)
        + _note_lines(report)
        + "".join(f"wrote {path}\n" for path in written.values())
    )
    return EXIT_OK


def _faint_line(report: SlideReport) -> str:
    """"  0 vs 1+: ..." under a call of 0 whose scorer read the tiles coarser than ×40 (the
    0-vs-1+ comment then says what it could not see); "" otherwise."""
    from ..run.pipeline import faint_caveat

    low = report.call.evidence.her2_low
    if low is None or not faint_caveat(report.call, report.predictor):
        return ""
    return f"  0 vs 1+: {low.subcategory}\n"


def _note_lines(report: SlideReport) -> str:
    """"  note: ..." for each note the scorer states about how the run was set up (a µm/px
    given by hand); "" for none."""
    from ..tiles.grid import scoring_notes

    notes = scoring_notes(report.predictor, report.slide.mpp_source)
    return "".join(f"  note: {note}\n" for note in notes)


def _cmd_batch(args: argparse.Namespace) -> int:
    from ..cohort.batch import expand_paths, score_cohort

    paths = expand_paths(args.paths)
    if not paths:
        sys.stderr.write("napari-her2: error: no slides found in the given paths\n")
        return EXIT_ERROR

    def show(row: dict) -> None:
        if row["status"] == "ok":
            sys.stdout.write(f"{row['slide']}: HER2 {row['score']} ({row['category']})\n")
        elif row["status"] == "skipped":
            sys.stdout.write(f"{row['slide']}: skipped, outputs already there "
                             f"(HER2 {row['score']})\n")
        else:
            sys.stderr.write(f"napari-her2: error: {row['error']}\n")

    rows = score_cohort(paths, args.out, params=params_from_args(args, workers=1),
                        mpp=args.mpp, scheduler=args.scheduler, n_workers=args.workers,
                        on_result=show, timeout=args.timeout, roi_dir=args.roi_dir,
                        resume=args.resume)
    failed = sum(r["status"] == "error" for r in rows)
    skipped = sum(r["status"] == "skipped" for r in rows)
    sys.stdout.write(f"{len(rows) - failed - skipped} of {len(rows)} slides scored"
                     + (f", {skipped} skipped (complete outputs already there)" if skipped else "")
                     + f"; summary in {Path(args.out) / 'batch_summary.csv'}\n")
    return EXIT_OK if failed == 0 else EXIT_ERROR


def _cmd_models(args: argparse.Namespace) -> int:
    from ..models import describe_models
    from .features import encoder_entries

    entries = describe_models() + encoder_entries()
    if args.json:
        sys.stdout.write(json.dumps(entries, indent=2, default=str) + "\n")
        return EXIT_OK
    for e in entries:
        kind = e.get("kind", "")
        summary = e.get("summary") or e.get("card", {}).get("description", "")
        if e.get("valid") is False:
            kind, summary = "invalid", e.get("error", "")
        sys.stdout.write(f"{e.get('name')}  [{kind}]  {summary}\n")
        if e.get("path"):
            sys.stdout.write(f"    {e['path']}\n")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    import os

    from .._sample_data import sample_slide_path

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


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..cohort.evaluate import evaluate_folder, summary_line

    def show(done: int, total: int, result) -> None:
        call = result.call if result.call is not None else f"no call ({result.no_call_reason})"
        sys.stdout.write(f"[{done}/{total}] {result.file}: label {result.label}, {call}\n")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate_folder(args.folder, args.out, labels_csv=args.labels, mpp=args.mpp,
                                 params=params_from_args(args), progress=show,
                                 regions=args.regions)
    sys.stdout.write(summary_line(result) + "\n"
                     + "".join(f"wrote {path}\n" for path in result.files.values()))
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="score the built-in IHC sample slide with dab-cells "
                          "(in napari when a display is available)")
    add_scoring_options(demo)
    _add_score_outputs(demo)
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument("--gui", action="store_true", help="open napari (needs a display)")
    mode.add_argument("--headless", action="store_true", help="score without napari")
    demo.set_defaults(func=_cmd_demo, mpp=None, roi=None)

    score = sub.add_parser("score", help="score one slide; writes <stem>.geojson and <stem>.json")
    score.add_argument("slide")
    score.add_argument("--roi", metavar="FILE", default=None,
                       help="QuPath GeoJSON of the region to score (level-0 px; Ignore*/Exclude "
                       "annotations are left out)")
    add_scoring_options(score)
    _add_score_outputs(score)
    score.set_defaults(func=_cmd_score)

    batch = sub.add_parser("batch", help="score many slides on a dask cluster")
    batch.add_argument("paths", nargs="+", help="slide files or folders of slides")
    add_scoring_options(batch)
    batch.add_argument("--scheduler", help="address of a dask.distributed scheduler")
    batch.add_argument("--workers", type=int, default=None, help="local worker processes")
    batch.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                       help="time limit per slide; a slide past it is reported as an error "
                       f"(default {DEFAULT_TIMEOUT_S:g})")
    batch.add_argument("--roi-dir", metavar="DIR", default=None,
                       help="folder of QuPath GeoJSON regions, <stem>.geojson per slide "
                       "(default: <stem>.geojson beside a slide is used when there)")
    batch.add_argument("--resume", action="store_true",
                       help="skip slides whose <stem>.json and <stem>.geojson are already in "
                       "--out, complete and made with the same settings")
    batch.set_defaults(func=_cmd_batch)

    evaluate = sub.add_parser(
        "evaluate", help="score a labelled folder and measure agreement with the labels")
    evaluate.add_argument("folder", help="labelled images: labels from file names "
                          "(NNNNN_test_2+.png, 2_name.jpg), sub-folders (0/, 1+/...) or --labels")
    evaluate.add_argument("--labels", default=None, metavar="CSV",
                          help="filename,label[,group] (or an ihc_score column)")
    evaluate.add_argument("--regions", default=None, metavar="DIR",
                          help="annotated regions, <image stem>.geojson (QuPath, classified "
                          "Tumor / Stroma / ...): count each image's cells and tumour cells "
                          "per region class; writes regions.csv")
    add_scoring_options(evaluate)
    evaluate.set_defaults(func=_cmd_evaluate)

    models = sub.add_parser("models", help="registered models and checkpoints with their cards")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=_cmd_models)

