"""Evaluation of predictions: napari-her2's agreement metrics plus the figures a run tracks.

:func:`evaluate` returns a JSON-able dict: ``n``, ``accuracy``, ``macro_f1``, ``kappa``
(Cohen) and ``qwk`` (quadratic-weighted kappa, the classes being ordinal), computed with
scikit-learn for cross-validation summaries, and ``agreement``, the full report of
:func:`napari_her2.cohort.metrics.agreement` (per-class precision/recall/specificity/F1, macro AUC,
4- and 3-class confusion, no-call rate, bootstrap CIs).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

from .labels import CLASSES

log = logging.getLogger(__name__)

N_BOOT = 200


def _kappa(y_true: np.ndarray, y_pred: np.ndarray, weights: str | None) -> float | None:
    if len(np.union1d(y_true, y_pred)) < 2:
        return None  # undefined with a single class on both sides
    value = cohen_kappa_score(y_true, y_pred, weights=weights, labels=list(range(len(CLASSES))))
    return None if not np.isfinite(value) else float(value)


def summary(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """The headline figures of one evaluation (scikit-learn)."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    if y_true.size == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None, "kappa": None, "qwk": None}
    return {
        "n": int(y_true.size),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "kappa": _kappa(y_true, y_pred, None),
        "qwk": _kappa(y_true, y_pred, "quadratic"),
    }


def agreement_report(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray | None,
                     seed: int = 0) -> dict[str, Any] | None:
    """napari-her2's agreement report on class names (None when it is not installed)."""
    try:
        from napari_her2.cohort.metrics import agreement
    except ImportError:
        log.warning("napari_her2.cohort.metrics is not available: the full agreement report is left out")
        return None
    names = np.asarray(CLASSES, dtype=object)
    return agreement(list(names[np.asarray(y_true, int)]), list(names[np.asarray(y_pred, int)]),
                     probs=probs, n_boot=N_BOOT, seed=seed)


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray | None = None,
             seed: int = 0) -> dict[str, Any]:
    """Headline figures and the full agreement report of one set of predictions."""
    out = summary(y_true, y_pred)
    if len(y_true):
        out["agreement"] = agreement_report(y_true, y_pred, probs, seed)
    return out
