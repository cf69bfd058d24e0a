"""Bags of tile features from the field's shared HDF5 files (TRIDENT / CLAM layout).

One ``<stem>.h5`` per slide: dataset ``features`` (N, D) float, dataset ``coords`` (N, 2)
(level-0 top-left x, y), attributes ``encoder`` (name), ``encoder_sha256`` (its weights),
``mpp`` (µm/px of the tiles it embedded), ``patch_size_level0`` (their side in level-0
pixels) and, optionally, ``patch_size`` (their side in pixels as embedded); the attributes
may sit on the file or, as TRIDENT writes them, on ``coords``.
``napari-her2 features`` writes such files, and so do TRIDENT and CLAM (with the encoder
attributes added).

Every file of a training run must come from one encoder: same name, same weights sha256 and
same embedding size; the first file that differs is named in a one-line error. Labels come
from a CSV (``slide_id,label[,group]``, the columns :func:`her2_train.labels.read_label_csv`
reads) keyed by the slide's stem. ``h5py`` is needed only here (the ``features`` extra).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from napari_her2.models.card import INPUT_SIZE_RANGE, MAX_PATCH0, MAX_SHORT_TEXT, MPP_RANGE

from .errors import DatasetError, LabelError
from .image_level import ImageFeatures
from .labels import LabeledImage, read_label_csv

log = logging.getLogger(__name__)

SUFFIX = ".h5"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
H5PY_HINT = "reading feature files needs h5py: pip install 'her2-train[features]'"


@dataclass(frozen=True)
class FeatureEncoder:
    """The encoder a folder of feature files came from (what the MIL card names).

    mpp / patch_size_level0 / input_px: shared by every file, else None (a cohort of 20x
    and 40x scans has one patch side in level-0 pixels per scan resolution)."""

    name: str
    sha256: str
    dim: int
    mpp: float | None = None
    patch_size_level0: int | None = None
    input_px: int | None = None

    def same_encoder(self, other: FeatureEncoder) -> bool:
        return (self.name, self.sha256, self.dim) == (other.name, other.sha256, other.dim)

    def __str__(self) -> str:
        return f"{self.name} (sha256 {self.sha256[:16]}, {self.dim}-d)"

    def card_block(self) -> dict[str, Any]:
        """The model card's ``encoder`` field."""
        block: dict[str, Any] = {"name": self.name, "sha256": self.sha256, "dim": self.dim}
        if self.mpp is not None:
            block["mpp"] = self.mpp
        if self.patch_size_level0 is not None:
            block["patch_size_level0"] = self.patch_size_level0
        if self.input_px is not None:
            block["input_px"] = self.input_px
        return block


@dataclass(frozen=True)
class FeatureFile:
    """One slide's bag: (N, D) float32 features and the encoder that made them."""

    path: Path
    features: np.ndarray
    encoder: FeatureEncoder


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise DatasetError(H5PY_HINT) from None
    return h5py


def _attr(h5: Any, name: str) -> Any:
    """An attribute of the file, else of its ``coords`` dataset (TRIDENT), else None;
    bytes decoded, numpy scalars as Python values."""
    for node in (h5, h5.get("coords")):
        if node is not None and name in node.attrs:
            value = node.attrs[name]
            if isinstance(value, bytes):
                return value.decode("utf-8", "replace")
            return value.item() if isinstance(value, np.generic) else value
    return None


def _rows(n: int, max_tiles: int | None) -> np.ndarray | slice:
    """Evenly spread rows to keep (increasing, as h5py wants), or every row."""
    if max_tiles is None or n <= max_tiles:
        return slice(None)
    return np.unique(np.linspace(0, n - 1, max_tiles).round().astype(np.int64))


def read_feature_file(path: str | Path, max_tiles: int | None = None) -> FeatureFile:
    """The features of one ``.h5`` file (``max_tiles`` evenly spread rows at most) and its
    encoder; DatasetError (one line, naming the file) for anything unusable."""
    h5py, path = _h5py(), Path(path)
    try:
        with h5py.File(path, "r") as h5:
            data = h5.get("features")
            if not isinstance(data, h5py.Dataset) or data.ndim != 2:
                raise DatasetError(f"{path}: no 2-D 'features' dataset (N tiles x D)")
            if data.shape[0] == 0 or data.shape[1] == 0:
                raise DatasetError(f"{path}: the 'features' dataset is empty {data.shape}")
            features = np.asarray(data[_rows(data.shape[0], max_tiles)], np.float32)
            name, sha = _attr(h5, "encoder"), _attr(h5, "encoder_sha256")
            mpp, patch0 = _attr(h5, "mpp"), _attr(h5, "patch_size_level0")
            patch = _attr(h5, "patch_size")
    except OSError as err:
        raise DatasetError(f"{path}: cannot read it as HDF5 ({err})") from None
    if not name or not sha:
        raise DatasetError(f"{path}: no 'encoder' and 'encoder_sha256' attributes; the MIL "
                           "card must name the encoder its features came from")
    if not np.isfinite(features).all():
        raise DatasetError(f"{path}: the features hold NaN or infinite values")
    encoder = FeatureEncoder(
        str(name), str(sha).lower(), int(features.shape[1]),
        None if mpp is None else float(mpp),
        None if patch0 is None else int(patch0),
        None if patch is None else int(patch))
    _check_encoder(path, encoder)
    return FeatureFile(path, features, encoder)


def _check_encoder(path: Path, enc: FeatureEncoder) -> None:
    """Refuse now what the model card would refuse after training."""
    if len(enc.name) > MAX_SHORT_TEXT:
        raise DatasetError(f"{path}: encoder name longer than {MAX_SHORT_TEXT} characters")
    if not _SHA256.match(enc.sha256):
        raise DatasetError(f"{path}: encoder_sha256 {enc.sha256[:70]!r} is not a sha256 "
                           "(64 hex digits)")
    if enc.mpp is not None and not MPP_RANGE[0] <= enc.mpp <= MPP_RANGE[1]:
        raise DatasetError(f"{path}: mpp {enc.mpp:g} is outside {MPP_RANGE[0]}..{MPP_RANGE[1]} "
                           "µm/px")
    if enc.patch_size_level0 is not None and not 0 < enc.patch_size_level0 <= MAX_PATCH0:
        raise DatasetError(f"{path}: patch_size_level0 {enc.patch_size_level0} is outside "
                           f"1..{MAX_PATCH0}")
    lo, hi = INPUT_SIZE_RANGE
    if enc.input_px is not None and not lo <= enc.input_px <= hi:
        raise DatasetError(f"{path}: patch_size {enc.input_px} is outside {lo}..{hi} px")


def feature_files(folder: str | Path) -> list[Path]:
    """The ``*.h5`` files of a folder, sorted; DatasetError when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such feature folder")
    files = sorted(p for p in folder.iterdir() if p.suffix == SUFFIX and p.is_file())
    if not files:
        raise DatasetError(f"{folder}: no {SUFFIX} feature files")
    return files


def stem_labels(csv: Path) -> dict[str, tuple[int, str | None]]:
    """``{slide stem: (label, group)}``: a CSV entry counts by its name as written, without
    its last suffix and without all its suffixes (``s1``, ``s1.svs``, ``s1.ome.tif``)."""
    out: dict[str, tuple[int, str | None]] = {}
    for key, value in read_label_csv(csv).items():
        for form in (key, Path(key).stem, key.split(".")[0]):
            out.setdefault(form, value)
    return out


def _common(values: list[Any]) -> Any:
    return values[0] if values and all(v == values[0] for v in values) else None


def load_feature_bags(folder: str | Path, labels_csv: str | Path | None = None, *,
                      max_tiles: int | None = None, encoder: FeatureEncoder | None = None,
                      ) -> tuple[list[ImageFeatures], FeatureEncoder]:
    """Every labelled bag of a feature folder and their one encoder.

    labels_csv: default ``folder/labels.csv``. A file without a label, or from another
    encoder than the first file (or than ``encoder``, e.g. the training set's for an
    external folder), is refused in one line naming it."""
    folder = Path(folder)
    csv = Path(labels_csv) if labels_csv else folder / "labels.csv"
    if not csv.is_file():
        raise DatasetError(f"{csv}: no label file; give --labels CSV (slide_id,label)")
    table = stem_labels(csv)
    bags: list[ImageFeatures] = []
    encoders: list[FeatureEncoder] = []
    for path in feature_files(folder):
        if path.stem not in table:
            raise LabelError(f"{path}: slide {path.stem!r} has no label in {csv}")
        f = read_feature_file(path, max_tiles)
        first = encoder or (encoders[0] if encoders else f.encoder)
        if not f.encoder.same_encoder(first):
            raise DatasetError(f"{path}: features of encoder {f.encoder}, not of {first} like "
                               "the others; one MIL model takes one encoder's features")
        label, group = table[path.stem]
        image = LabeledImage(path, label, group or str(path))
        n = len(f.features)
        bags.append(ImageFeatures(image, np.zeros((n, 0), np.float32), f.features))
        encoders.append(f.encoder)
    first = encoders[0]
    shared = FeatureEncoder(first.name, first.sha256, first.dim,
                            _common([e.mpp for e in encoders]),
                            _common([e.patch_size_level0 for e in encoders]),
                            _common([e.input_px for e in encoders]))
    log.info("%d bags of encoder %s from %s", len(bags), shared, folder)
    return bags, shared
