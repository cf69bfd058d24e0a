"""Score every image of a labelled folder and measure the agreement with its labels.

Labels come from a CSV (``filename,label[,group]``; the label column may be called
``ihc_score`` or ``score``, the group column ``patient``), from ``labels.csv`` in the folder
when no CSV is given, or else from the image names:

- the BCI convention ``NNNNN_<split>_<score>.png`` (``00052_test_3+.png``);
- a sub-folder named after the score (``1+/any.png``);
- a leading score ``<score>_<anything>`` (``0_9b0f64d1-....jpg``).

:func:`evaluate_folder` scores each image with :func:`napari_her2.score_slide`; an image that
cannot be scored (unreadable, no µm/px, no tissue, no tumour) is a no-call with its reason and
the others go on. It writes ``evaluation.csv`` (one row per image), ``evaluation.json``
(agreement figures, calibration, parameters, version), ``evaluation.png`` (confusion matrices)
and ``evaluation-reliability.png`` (accuracy against confidence per bin). Calibration is the
expected calibration error of the calls' confidences (:mod:`.calibration`: 10 equal-width
bins, the number of calls in each); no-calls have no confidence and are left out of it, and
how many were left out is stated.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..classes import PERCENT_COLUMNS, borderline_text, percent_columns
from ..errors import Her2Error, MissingMppError, ScoringCancelled, SlideReadError
from ..params import ParamError, ScoringParams
from ..predict import TilePredictor
from .calibration import format_calibration, plot_reliability, reliability
from .metrics import LabelError, agreement, format_summary, normalise_score, plot_confusion

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".ndpi")
DEFAULT_LABELS_CSV = "labels.csv"
#: the last columns (PERCENT_COLUMNS): a cell scorer's percentages of tumour cells per
#: class, the figures its call is made from
CSV_FIELDS: tuple[str, ...] = ("file", "label", "call", "category", "confidence",
                               "borderline", "n_tumour_tiles", "no_call_reason", "group",
                               "n_tumour_cells", "n_tumour_outlined", *PERCENT_COLUMNS)
FILE_COLUMNS = ("filename", "file", "image", "path")
LABEL_COLUMNS = ("label", "ihc_score", "score", "her2_score")
GROUP_COLUMNS = ("group", "patient", "patient_id", "case")

_BCI_NAME = re.compile(r"^\d+_[A-Za-z]+_(?P<score>[0-3]\+?)$")
_LEADING_SCORE = re.compile(r"^(?P<score>[0-3]\+?)_.")


@dataclass(frozen=True)
class LabelledImage:
    """An image and its reference HER2 score ("0", "1+", "2+", "3+")."""

    path: Path
    label: str
    group: str | None = None


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


# --------------------------------------------------------------------------- labels


def load_labelled_folder(folder: str | os.PathLike,
                         labels_csv: str | os.PathLike | None = None) -> list[LabelledImage]:
    """The labelled images of ``folder`` (sorted by path).

    With ``labels_csv`` (or a ``labels.csv`` inside the folder) the CSV decides; file names
    in it are relative to ``folder``. Otherwise labels come from the image names (module
    docstring); images without a label there are skipped with a log message.
    """
    root = Path(folder)
    if not root.is_dir():
        raise Her2Error(f"{root}: not a folder of labelled images")
    csv_path = labels_source(root, labels_csv)
    images = _from_names(root) if csv_path is None else _from_csv(root, csv_path)
    if not images:
        raise Her2Error(f"{root}: no labelled image found (labels from a CSV, from names like "
                        "00052_test_3+.png or 0_<id>.jpg, or from sub-folders 0/ 1+/ 2+/ 3+/)")
    return sorted(images, key=lambda im: im.path)


def labels_source(folder: Path, labels_csv: str | os.PathLike | None = None) -> Path | None:
    """The CSV the labels come from: ``labels_csv``, else the folder's ``labels.csv`` if it
    has one, else None (labels from the image names)."""
    if labels_csv is not None:
        return Path(labels_csv)
    default = folder / DEFAULT_LABELS_CSV
    return default if default.is_file() else None


def _is_image(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
            and not path.name.startswith("."))


def _from_names(root: Path) -> list[LabelledImage]:
    images = []
    for path in sorted(p for p in root.rglob("*") if _is_image(p)):
        label = label_from_name(path, root)
        if label is None:
            log.info("%s: no label in its name or folder, skipped", path)
        else:
            images.append(LabelledImage(path, label))
    return images


def label_from_name(path: Path, root: Path | None = None) -> str | None:
    """The score a file's name or sub-folder gives (BCI name, score folder, leading score)."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    bci = _BCI_NAME.match(stem)
    if bci:
        return normalise_score(bci["score"])
    if root is not None and path.parent != root:
        folder_label = _score_or_none(path.parent.name)
        if folder_label is not None:
            return folder_label
    leading = _LEADING_SCORE.match(stem)
    return normalise_score(leading["score"]) if leading else None


def _score_or_none(text: str) -> str | None:
    try:
        return normalise_score(text)
    except LabelError:
        return None


def _pick(header: list[str], names: Iterable[str]) -> int | None:
    lower = [h.strip().lower() for h in header]
    return next((lower.index(n) for n in names if n in lower), None)


def _columns(header: list[str]) -> tuple[int, int, int | None, bool]:
    """(file, label, group) column indices and whether the first row is a header."""
    file_col, label_col = _pick(header, FILE_COLUMNS), _pick(header, LABEL_COLUMNS)
    if file_col is not None and label_col is not None:
        return file_col, label_col, _pick(header, GROUP_COLUMNS), True
    return 0, 1, (2 if len(header) > 2 else None), False  # headerless filename,label[,group]


def _read_rows(csv_path: Path) -> list[list[str]]:
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise Her2Error(f"{csv_path}: cannot read the labels CSV ({err})") from err
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise Her2Error(f"{csv_path}: the labels CSV is empty")
    return rows


def _from_csv(root: Path, csv_path: Path) -> list[LabelledImage]:
    rows = _read_rows(csv_path)
    file_col, label_col, group_col, has_header = _columns(rows[0])
    images, seen = [], set()
    for line, row in enumerate(rows[1:] if has_header else rows, start=2 if has_header else 1):
        if len(row) <= max(file_col, label_col):
            raise Her2Error(f"{csv_path}: line {line} has no file name and label")
        name = row[file_col].strip()
        path = Path(name) if Path(name).is_absolute() else root / name
        if not path.exists():
            raise Her2Error(f"{csv_path}: line {line}: image {name!r} not found in {root}")
        if path in seen:
            raise Her2Error(f"{csv_path}: line {line}: image {name!r} is listed twice")
        seen.add(path)
        images.append(LabelledImage(path, _csv_label(csv_path, line, row[label_col]),
                                    _csv_group(row, group_col)))
    return images


def _csv_label(csv_path: Path, line: int, value: str) -> str:
    try:
        label = normalise_score(value)
    except LabelError:
        label = None
    if label is None:
        raise Her2Error(f"{csv_path}: line {line}: label {value!r} is not a HER2 score "
                        "(0, 1+, 2+ or 3+)")
    return label


def _csv_group(row: list[str], group_col: int | None) -> str | None:
    if group_col is None or group_col >= len(row):
        return None
    return row[group_col].strip() or None


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
                mpp: float | None = None) -> ImageResult:
    """Score one image; an unreadable image or one without µm/px (or any other
    :class:`Her2Error` of that image) is a no-call with its reason. Errors of the settings
    (:class:`ParamError`) and cancelling are raised."""
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
        return _result_of_report(image, file, report.to_dict())
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
) -> EvaluationResult:
    """Score every labelled image of ``folder``; write evaluation.csv/.json/.png to ``out_dir``.

    ``mpp`` supplies or overrides every image's µm/px; ``organ`` ("breast", "gastric")
    overrides ``params.call.organ`` (default breast); ``model`` is a registry name,
    checkpoint name or path, or a predictor (default ``params.model.name``, dab-cells),
    loaded once. ``progress(done, total, result)`` is called after each image. Bad labels,
    bad settings or an unknown model raise :class:`Her2Error`; an image that cannot be scored
    is a no-call with its reason.
    """
    from ..export import ensure_out_dir
    from ..run.pipeline import as_predictor, with_paired_tile_model

    root = Path(folder)
    images = load_labelled_folder(root, labels_csv)
    out = ensure_out_dir(out_dir)
    scoring = _scoring_params(params, organ)
    if model is None:  # a slide model alone brings its own tile model, as in `score`
        scoring = with_paired_tile_model(scoring)
    predictor = as_predictor(model if model is not None else scoring.model.name,
                             scoring.model.device.value)
    results = []
    for done, image in enumerate(images, start=1):
        result = score_image(image, predictor, scoring, file=_relative(image.path, root), mpp=mpp)
        results.append(result)
        if progress is not None:
            progress(done, len(images), result)
    figures = agreement([r.label for r in results], [r.call for r in results],
                        seed=scoring.call.seed)
    calibration = calibration_of(results)
    settings = _settings(root, labels_csv, mpp, predictor, scoring)
    files = _write_outputs(out, results, figures, calibration, settings)
    return EvaluationResult(root, tuple(results), figures, files, calibration)


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
                   calibration: dict[str, Any], settings: dict[str, Any]) -> dict[str, Path]:
    from ..export import write_report_json, write_text

    summary = {"agreement": figures, "calibration": calibration, **settings,
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
    return line + (f"; {format_calibration(result.calibration)}" if result.calibration else "")
