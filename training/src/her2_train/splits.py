"""Splits without leakage: whole images (or whole groups, e.g. patients) go to one side.

Tiles never appear in a split on their own: splits are made over images, grouped by
``LabeledImage.group``, so every tile of an image and every image of a group stay together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, StratifiedGroupKFold

from .errors import TrainError

Split = tuple[np.ndarray, np.ndarray]


def _check(groups: Sequence[str], k: int) -> int:
    n_groups = len(set(groups))
    if k < 2:
        raise TrainError(f"cross-validation needs at least 2 folds, got {k}")
    if n_groups < 2:
        raise TrainError(f"cross-validation needs at least 2 groups (images), got {n_groups}")
    return min(k, n_groups)


def kfold(labels: Sequence[int], groups: Sequence[str], k: int, seed: int = 0) -> list[Split]:
    """K-fold over groups, stratified by label where every class has enough groups; K is
    capped at the number of groups. Returns (train, test) image indices per fold."""
    k = _check(groups, k)
    x = np.zeros((len(groups), 1))
    y = np.asarray(labels)
    _, per_class = np.unique(y, return_counts=True)
    if per_class.min() >= k:
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        folds = cv.split(x, y, groups)
    else:
        order = np.random.default_rng(seed).permutation(len(groups))
        shuffled = [f"{groups[i]}" for i in order]
        folds = ((order[tr], order[te]) for tr, te in GroupKFold(n_splits=k).split(
            x[order], y[order], shuffled))
    return [(np.sort(tr), np.sort(te)) for tr, te in folds]


def monte_carlo(groups: Sequence[str], n_splits: int, test_size: float = 0.25,
                seed: int = 0) -> list[Split]:
    """Monte-Carlo cross-validation: ``n_splits`` random group splits, ``test_size`` held out."""
    _check(groups, 2)
    cv = GroupShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=seed)
    x = np.zeros((len(groups), 1))
    return [(np.sort(tr), np.sort(te)) for tr, te in cv.split(x, groups=groups)]


def holdout(groups: Sequence[str], fraction: float, seed: int) -> Split:
    """One group split for early stopping: (train, validation) indices; empty validation when
    there are fewer than 3 groups or ``fraction`` is 0."""
    idx = np.arange(len(groups))
    if fraction <= 0 or len(set(groups)) < 3:
        return idx, idx[:0]
    cv = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    tr, va = next(cv.split(np.zeros((len(groups), 1)), groups=groups))
    return np.sort(tr), np.sort(va)


def ci95(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean and 95% interval over folds: mean ± 1.96 sd / sqrt(K) (seeds 001 and 002)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if v.size == 0:
        return {"mean": None, "lo": None, "hi": None, "k": 0}
    half = 1.96 * v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else 0.0
    m = float(v.mean())
    return {"mean": m, "lo": m - half, "hi": m + half, "k": int(v.size)}
