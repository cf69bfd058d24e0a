"""The labels of a folder of images: what each image's HER2 score should be.

Labels come from a CSV (``filename,label[,group]``; the label column may be called
``ihc_score`` or ``score``, the group column ``patient``), from ``labels.csv`` in the folder
when no CSV is given, or else from the image names:

- the BCI convention ``NNNNN_<split>_<score>.png`` (``00052_test_3+.png``);
- a sub-folder named after the score (``1+/any.png``);
- a leading score ``<score>_<anything>`` (``0_9b0f64d1-....jpg``).

A missing folder, an unreadable CSV or a bad label raises :class:`Her2Error` naming the file
(and the line).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import Her2Error
from .metrics import LabelError, normalise_score

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".ndpi")
DEFAULT_LABELS_CSV = "labels.csv"
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
