"""Score every image of a labelled folder and measure the agreement with its labels.

The labels come from a CSV or from the image names (:mod:`.labels`).
:func:`evaluate_folder` scores each image with :func:`napari_her2.score_slide`; an image that
cannot be scored (unreadable, no µm/px, no tissue, no tumour) is a no-call with its reason and
the others go on. It writes ``evaluation.csv`` (one row per image), ``evaluation.json``
(agreement figures, calibration, parameters, version), ``evaluation.png`` (confusion matrices)
and ``evaluation-reliability.png`` (accuracy against confidence per bin). Calibration is the
expected calibration error of the calls' confidences (:mod:`.calibration`: 10 equal-width
bins, the number of calls in each); no-calls have no confidence and are left out of it, and
how many were left out is stated. With an annotation folder (``regions``), the cells of each
image that has annotated regions are counted per region class (:mod:`.annotations`), written
to ``regions.csv`` and pooled into ``evaluation.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..classes import PERCENT_COLUMNS, borderline_text, percent_columns
from ..errors import Her2Error, MissingMppError, ScoringCancelled, SlideReadError
from ..params import ParamError, ScoringParams
from ..predict import TilePredictor
from ..tiles.cells import CellTable
from ..tiles.regions import Region
from .annotations import (
    Counts,
    cells_in_regions,
    format_regions,
    pooled,
    region_files,
    regions_csv_text,
)
from .calibration import format_calibration, plot_reliability, reliability
from .labels import LabelledImage, labels_source, load_labelled_folder
from .metrics import agreement, format_summary, plot_confusion

log = logging.getLogger(__name__)

#: the last columns (PERCENT_COLUMNS): a cell scorer's percentages of tumour cells per
#: class, the figures its call is made from
CSV_FIELDS: tuple[str, ...] = ("file", "label", "call", "category", "confidence",
                               "borderline", "n_tumour_tiles", "no_call_reason", "group",
                               "n_tumour_cells", "n_tumour_outlined", *PERCENT_COLUMNS)


@dataclass(frozen=True)
class ImageResult:
    """The call for one labelled image (``call`` None = no-call, with ``no_call_reason``)."""

    file: str
    label: str
    call: str | None
    category: str | None
    confidence: float | None
    n_tumour_tiles: int | None
    no_call_reason: str | None
    group: str | None = None
    #: "0 / 1+" when the call is borderline between two scores (review it), else None
    borderline: str | None = None
    #: a cell scorer's tumour cells, and those of them found only as an interior outlined by
    #: DAB (no haematoxylin nucleus): why an image got "no tumour found", or what a call on a
    #: field of stained ducts rests on; None for a tile model
    n_tumour_cells: int | None = None
    n_tumour_outlined: int | None = None
    #: percent of the tumour cells in class 0, 1+, 2+, 3+ (None: no tumour cells measured)
    tumour_percent: tuple[float, float, float, float] | None = None
    #: per annotated region class: (cells, tumour cells) inside (None: no annotations)
    regions: Counts | None = None

    def csv_row(self) -> list[Any]:
        named = [getattr(self, f) for f in CSV_FIELDS[: -len(PERCENT_COLUMNS)]]
        percent = list(self.tumour_percent or (None,) * len(PERCENT_COLUMNS))
        return ["" if v is None else v for v in named + percent]


@dataclass(frozen=True)
class EvaluationResult:
    """Per-image results, the agreement figures, the calibration of the confidences
    (:func:`calibration_of`) and the files written."""

    folder: Path
    images: tuple[ImageResult, ...]
    agreement: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    #: tumour cells against annotated regions (:func:`.annotations.pooled`), when asked for
    regions: dict[str, Any] | None = None


# --------------------------------------------------------------------------- scoring


def no_call_reason(report: dict[str, Any]) -> str | None:
    """Why a slide report has no score, as the report says it (None when it has a score)."""
    if report.get("score") is not None:
        return None
    reason = report.get("no_call") or "no call"
    detail = report.get("no_call_detail")
    return f"{reason} ({detail})" if detail else str(reason)


def _result_of_report(image: LabelledImage, file: str, report: dict[str, Any]) -> ImageResult:
    confidence = report.get("confidence")
    evidence = report.get("evidence") or {}
    cells = report.get("cells") or {}
    return ImageResult(
        file=file, label=image.label, call=report.get("score"), category=report.get("category"),
        confidence=None if confidence is None else round(float(confidence), 4),
        n_tumour_tiles=evidence.get("n_tumour_tiles"),
        no_call_reason=no_call_reason(report), group=image.group,
        borderline=borderline_text(report), n_tumour_cells=cells.get("n_tumour_cells"),
        n_tumour_outlined=cells.get("n_tumour_outlined"), tumour_percent=_percent(cells))


def _percent(cells: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """The report's percentages of tumour cells in class 0..3+, None without tumour cells."""
    values = [v for v in percent_columns(cells.get("tumour_percent")).values() if v is not None]
    if len(values) != len(PERCENT_COLUMNS):
        return None
    p0, p1, p2, p3 = (float(v) for v in values)
    return p0, p1, p2, p3


def _error_reason(err: Her2Error) -> str:
    """The no-call reason of an image that could not be scored (missing µm/px, unreadable)."""
    from ..run.pipeline import no_call_for_error

    if isinstance(err, MissingMppError | SlideReadError):
        call = no_call_for_error(err)
        return f"{call.no_call.value} ({call.no_call_detail})" if call.no_call else str(err)
    return str(err)


def score_image(image: LabelledImage, predictor: Any, params: ScoringParams, *, file: str,
                mpp: float | None = None, region: Region | None = None) -> ImageResult:
    """Score one image; an unreadable image or one without µm/px (or any other
    :class:`Her2Error` of that image) is a no-call with its reason. Errors of the settings
    (:class:`ParamError`) and cancelling are raised. With annotated ``region`` s, its cells
    are counted in each region class (none found: every class counts 0)."""
    from ..run.pipeline import score_slide

    try:
        report = score_slide(image.path, predictor, mpp=mpp, params=params)
    except (ScoringCancelled, ParamError):
        raise
    except Her2Error as err:
        log.info("%s: no call: %s", image.path, err)
        return ImageResult(file, image.label, None, None, None, None, _error_reason(err),
                           image.group)
    try:
        result = _result_of_report(image, file, report.to_dict())
        if region is None:
            return result
        cells = report.results.cells if report.results.cells is not None else CellTable()
        return dataclasses.replace(result, regions=cells_in_regions(cells, region))
    finally:
        report.slide.close()


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _scoring_params(params: ScoringParams | None, organ: str | None) -> ScoringParams:
    base = params or ScoringParams()
    return base if organ is None else base.with_overrides(organ=organ)


def evaluate_folder(
    folder: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    labels_csv: str | os.PathLike | None = None,
    mpp: float | None = None,
    organ: str | None = None,
    model: str | os.PathLike | TilePredictor | None = None,
    params: ScoringParams | None = None,
    progress: Callable[[int, int, ImageResult], None] | None = None,
    regions: str | os.PathLike | None = None,
) -> EvaluationResult:
    """Score every labelled image of ``folder``; write evaluation.csv/.json/.png to ``out_dir``.

    ``mpp`` supplies or overrides every image's µm/px; ``organ`` ("breast", "gastric")
    overrides ``params.call.organ`` (default breast); ``model`` is a registry name,
    checkpoint name or path, or a predictor (default ``params.model.name``, dab-cells),
    loaded once. ``progress(done, total, result)`` is called after each image. Bad labels,
    bad settings or an unknown model raise :class:`Her2Error`; an image that cannot be scored
    is a no-call with its reason. ``regions`` is a folder of ``<image stem>.geojson``
    annotations (:mod:`.annotations`), read before any image is scored.
    """
    from ..export import ensure_out_dir, write_text
    from ..run.pipeline import as_predictor, with_paired_tile_model

    root = Path(folder)
    images = load_labelled_folder(root, labels_csv)
    annotated = region_files([i.path for i in images], regions) if regions is not None else {}
    out = ensure_out_dir(out_dir)
    scoring = _scoring_params(params, organ)
    if model is None:  # a slide model alone brings its own tile model, as in `score`
        scoring = with_paired_tile_model(scoring)
    predictor = as_predictor(model if model is not None else scoring.model.name,
                             scoring.model.device.value)
    results = []
    for done, image in enumerate(images, start=1):
        result = score_image(image, predictor, scoring, file=_relative(image.path, root), mpp=mpp,
                             region=annotated.get(image.path))
        results.append(result)
        if progress is not None:
            progress(done, len(images), result)
    figures = agreement([r.label for r in results], [r.call for r in results],
                        seed=scoring.call.seed)
    calibration = calibration_of(results)
    settings = _settings(root, labels_csv, mpp, predictor, scoring)
    counted = {r.file: r.regions for r in results if r.regions is not None}
    in_regions = pooled(counted) if regions is not None else None
    files = _write_outputs(out, results, figures, calibration, settings, in_regions)
    if in_regions is not None:
        files["regions"] = write_text(out / "regions.csv", regions_csv_text(counted))
    return EvaluationResult(root, tuple(results), figures, files, calibration, in_regions)


def calibration_of(results: Iterable[ImageResult]) -> dict[str, Any]:
    """ECE and reliability table of the calls' confidences (right: call == label).

    No-calls are left out (``left_out_no_calls``), as are calls without a confidence
    (``left_out_no_confidence``)."""
    rows = list(results)
    called = [(r.confidence, r.call == r.label) for r in rows
              if r.call is not None and r.confidence is not None]
    report = reliability([c for c, _ in called], [hit for _, hit in called])
    report["left_out_no_calls"] = sum(r.call is None for r in rows)
    report["left_out_no_confidence"] = sum(r.call is not None and r.confidence is None
                                           for r in rows)
    report["of"] = "confidence of the called class, per image"
    return report


def _settings(root: Path, labels_csv: Any, mpp: float | None, predictor: Any,
              params: ScoringParams) -> dict[str, Any]:
    from .._version import __version__

    return {
        "folder": str(root),
        "labels": str(labels_source(root, labels_csv) or "image names"),
        "mpp": mpp,
        "model": {"name": getattr(predictor, "name", str(predictor)),
                  "sha256": getattr(predictor, "sha256", None)},
        "params": params.to_dict(),
        "version": __version__,
    }


def results_csv_text(results: Iterable[ImageResult]) -> str:
    """The per-image CSV: the columns of ``CSV_FIELDS`` (file, label, call, category,
    confidence, borderline, n_tumour_tiles, no_call_reason, group, n_tumour_cells,
    n_tumour_outlined, tumour_pct_0 .. tumour_pct_3+)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    writer.writerows(r.csv_row() for r in results)
    return buf.getvalue()


def _write_outputs(out: Path, results: list[ImageResult], figures: dict[str, Any],
                   calibration: dict[str, Any], settings: dict[str, Any],
                   regions: dict[str, Any] | None = None) -> dict[str, Path]:
    from ..export import write_report_json, write_text

    summary = {"agreement": figures, "calibration": calibration, **settings,
               **({"regions": regions} if regions is not None else {}),
               "images": [dataclasses.asdict(r) for r in results]}
    return {
        "csv": write_text(out / "evaluation.csv", results_csv_text(results)),
        "json": write_report_json(out / "evaluation.json", summary),
        "png": plot_confusion(figures, out / "evaluation.png"),
        "reliability": plot_reliability(calibration, out / "evaluation-reliability.png",
                                        title=_caller(settings)),
    }


def _caller(settings: dict[str, Any]) -> str:
    """What made the calls: the tile model, and the slide model when one made them."""
    slide = settings["params"].get("call", {}).get("slide_model")
    tile = settings["model"]["name"]
    return f"{Path(slide).stem} over {tile}" if slide else f"{tile}, guideline rule"


def summary_line(result: EvaluationResult) -> str:
    """One line for the terminal: folder, key figures with 95% CIs, calibration (ECE)."""
    line = f"{result.folder.name}: {format_summary(result.agreement)}"
    line += f"; {format_calibration(result.calibration)}" if result.calibration else ""
    return line + (f"; {format_regions(result.regions)}" if result.regions else "")
