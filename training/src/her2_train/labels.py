"""Labelled images: where the HER2 score of each image comes from.

Sources, in order of precedence for one image:

1. a CSV file (``--labels``): ``filename,label[,group]``; the file column may also be
   called ``slide_id`` (as CLAM's), the label column ``ihc_score`` or ``score``, the group
   column ``patient`` or ``case``;
2. the BCI file-name convention ``NNNNN_<split>_<score>.png`` (e.g. ``00052_train_3+.png``);
3. a leading score in the file name (``2_<uuid>.jpg``);
4. the name of the image's sub-folder (``DATA/2+/x.png``).

A QuPath GeoJSON file beside an image (``<stem>.geojson``) gives tile labels; such an image
needs no image label.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetError, LabelError

CLASSES: tuple[str, ...] = ("0", "1+", "2+", "3+")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".ndpi", ".btf")
NO_LABEL = -1

_SCORE = re.compile(r"^\s*(?:her2[\s_:-]*)?([0-3])\s*(\+)?\s*$", re.IGNORECASE)
_BCI = re.compile(r"^\d+_(?:train|test|val|valid)_([0-3]\+?)$", re.IGNORECASE)
_LEADING = re.compile(r"^([0-3])\+?[_-]")
_LABEL_COLUMNS = ("label", "ihc_score", "score", "her2_score")
_FILE_COLUMNS = ("filename", "file", "image", "path", "slide_id", "slide")
_GROUP_COLUMNS = ("group", "patient", "case", "patient_id")


@dataclass(frozen=True)
class LabeledImage:
    """One image of a dataset: its path, image-level label (index into CLASSES, or
    NO_LABEL), split group (the image's path unless a patient/case is given) and optional
    QuPath GeoJSON file with tile annotations."""

    path: Path
    label: int
    group: str
    geojson: Path | None = None

    @property
    def has_label(self) -> bool:
        return self.label != NO_LABEL


def parse_score(text: str) -> int:
    """Index into CLASSES of a written HER2 score: ``0``, ``1``, ``1+``, ``HER2 2+``, ..."""
    m = _SCORE.match(str(text))
    if not m:
        raise LabelError(f"{text!r} is not a HER2 score (expected 0, 1+, 2+ or 3+)")
    return int(m.group(1))


def _labels_file(image: Path) -> Path:
    """The GeoJSON that labels an image's tiles: a review saved in napari-her2
    (``<stem>.review.geojson``: the pathologist's corrections) when there is one, else
    ``<stem>.geojson``."""
    from napari_her2.export import review_path

    review = review_path(image)
    return review if review.is_file() else image.with_suffix(".geojson")


def label_from_name(path: Path) -> int:
    """Label from the BCI convention, a leading score, or the parent folder; else NO_LABEL."""
    stem = path.name.split(".")[0]
    m = _BCI.match(stem)
    if m:
        return parse_score(m.group(1))
    m = _LEADING.match(stem)
    if m:
        return int(m.group(1))
    try:
        return parse_score(path.parent.name)
    except LabelError:
        return NO_LABEL


def _column(header: list[str], names: tuple[str, ...]) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    return next((lower[n] for n in names if n in lower), None)


def read_label_csv(path: Path) -> dict[str, tuple[int, str | None]]:
    """``{file name: (label, group or None)}`` from a CSV with a header row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as err:
        raise DatasetError(f"{path}: cannot read the label file ({err.strerror})") from None
    if not rows:
        raise DatasetError(f"{path}: the label file has no rows")
    header = list(rows[0].keys())
    fcol, lcol = _column(header, _FILE_COLUMNS), _column(header, _LABEL_COLUMNS)
    gcol = _column(header, _GROUP_COLUMNS)
    if fcol is None or lcol is None:
        raise DatasetError(f"{path}: needs a filename column and a label column "
                           f"({'/'.join(_LABEL_COLUMNS)}); found {', '.join(header)}")
    out: dict[str, tuple[int, str | None]] = {}
    for i, row in enumerate(rows, start=2):
        try:
            label = parse_score(row[lcol])
        except LabelError as err:
            raise LabelError(f"{path}: line {i}: {err}") from None
        group = row[gcol].strip() if gcol and row.get(gcol) else None
        out[Path(row[fcol].strip()).name] = (label, group)
    return out


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursively), sorted; DICOM folders are not searched."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files)


def discover(root: str | Path, labels_csv: str | Path | None = None, *,
             require_labels: bool = True) -> list[LabeledImage]:
    """The labelled images of a dataset folder (see the module docstring for the sources).

    require_labels: an image with neither an image label nor a GeoJSON is an error (True)
    or left out (False).
    """
    root = Path(root)
    table = read_label_csv(Path(labels_csv)) if labels_csv else None
    if table is None and (root / "labels.csv").is_file():
        table = read_label_csv(root / "labels.csv")
    items = []
    for path in find_images(root):
        geo = _labels_file(path)
        label, group = (table.get(path.name, (NO_LABEL, None)) if table is not None
                        else (NO_LABEL, None))
        if label == NO_LABEL:
            label = label_from_name(path)
        if label == NO_LABEL and not geo.is_file():
            if require_labels:
                raise LabelError(f"{path}: no label (not in the CSV, no score in the file or "
                                 "folder name, no .geojson beside it)")
            continue
        items.append(LabeledImage(path, label, group or str(path),
                                  geo if geo.is_file() else None))
    if not items:
        raise DatasetError(f"{root}: no labelled images found")
    return items
