"""Agreement of HER2 calls with reference labels: the figures a validation reports.

Pure numpy + scikit-learn (matplotlib only inside :func:`plot_confusion`), shared by
``napari-her2 evaluate`` and the training package.

Conventions:

- classes are the ordinal HER2 scores ``CLASSES`` = ("0", "1+", "2+", "3+"); labels may be
  written "0", "1", "1+", "2", "2+", "3", "3+" (or as numbers) and are normalised;
- a prediction of ``None`` is a *no-call*: it is left out of exact agreement and of the kappas
  (which describe the calls that were made), counts as wrong in ``accuracy``, lowers the
  recall of its true class and never the precision of any class;
- the 3-class collapse is negative (0, 1+) / equivocal (2+) / positive (3+);
- a figure that is undefined for the data (no image, no call, one class only) is ``None``.

Bootstrap intervals resample images with replacement. Every bootstrapped figure depends on
the images only through the (label, call) confusion counts, and resampling n images changes
those counts as a multinomial draw of n over the observed cell proportions, so the counts are
drawn directly (the same distribution at a cost independent of n).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import HER2_SCORES
from ..errors import Her2Error

CLASSES: tuple[str, ...] = HER2_SCORES
CATEGORIES: tuple[str, ...] = ("negative", "equivocal", "positive")
NO_CALL = "no call"
#: figures with a bootstrap interval
CI_FIGURES: tuple[str, ...] = ("exact_agreement", "quadratic_weighted_kappa", "no_call_rate",
                               "accuracy", "macro_f1")

_SCORE_ALIASES: dict[str, str] = {"0": "0", "1": "1+", "1+": "1+", "2": "2+", "2+": "2+",
                                  "3": "3+", "3+": "3+"}
_NO_CALL_TEXT = frozenset({"", "none", "nan", "no call", "no-call", "nocall"})
_CATEGORY_OF = {"0": "negative", "1+": "negative", "2+": "equivocal", "3+": "positive"}
_K = len(CLASSES)
_NO_CALL_INDEX = _K  # column of no-calls in the count matrices


class LabelError(Her2Error, ValueError):
    """A value is not a HER2 score."""


# --------------------------------------------------------------------------- labels


def normalise_score(value: Any) -> str | None:
    """The canonical HER2 score ("0", "1+", "2+", "3+") of ``value``; None for a no-call.

    Accepts "0", "1", "1+", ..., "HER2 2+", integers 0-3 and whole floats; ``None``, NaN, an
    empty string and "no call" are no-calls. Anything else raises :class:`LabelError`.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise LabelError(f"{value!r} is not a HER2 score (0, 1+, 2+ or 3+)")
    if isinstance(value, int | np.integer):
        key = str(int(value))
    elif isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        key = str(int(value)) if float(value).is_integer() else repr(value)
    elif isinstance(value, str):
        key = value.strip().lower()
        if key in _NO_CALL_TEXT:
            return None
        if key.startswith("her2"):
            key = key[len("her2"):].lstrip(" :_-")
        key = key.replace(" ", "")
    else:
        raise LabelError(f"{value!r} is not a HER2 score (0, 1+, 2+ or 3+)")
    try:
        return _SCORE_ALIASES[key]
    except KeyError:
        raise LabelError(f"{value!r} is not a HER2 score (0, 1+, 2+ or 3+)") from None


def collapse3(score: Any) -> str:
    """The 3-class category of a score: "negative" (0, 1+), "equivocal" (2+), "positive" (3+)."""
    canon = normalise_score(score)
    if canon is None:
        raise LabelError(f"{score!r} is a no-call and has no category")
    return _CATEGORY_OF[canon]


def _indices(y_true: Sequence[Any], y_pred: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Class indices of labels (0..3) and calls (0..3, or 4 for a no-call)."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    t, p = [], []
    for i, (label, call) in enumerate(zip(y_true, y_pred)):
        canon = normalise_score(label)
        if canon is None:
            raise LabelError(f"label {i} is missing ({label!r}); every image needs a label")
        t.append(CLASSES.index(canon))
        pred = normalise_score(call)
        p.append(_NO_CALL_INDEX if pred is None else CLASSES.index(pred))
    return np.asarray(t, dtype=np.int64), np.asarray(p, dtype=np.int64)


# --------------------------------------------------------------------------- figures from counts


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def figures_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Bootstrapped figures of (..., 4, 5) count matrices (rows label, columns call + no-call).

    Returns arrays of shape ``counts.shape[:-2]`` (NaN where undefined) for every name in
    ``CI_FIGURES``. Same definitions as :func:`agreement`'s point estimates (and tested
    against scikit-learn's).
    """
    c = np.asarray(counts, dtype=np.float64)
    called = c[..., :_K]
    n = c.sum(axis=(-2, -1))
    n_called = called.sum(axis=(-2, -1))
    hits = np.trace(called, axis1=-2, axis2=-1)
    w = _quadratic_weights(_K)
    expected = _ratio(called.sum(-1)[..., :, None] * called.sum(-2)[..., None, :],
                      n_called[..., None, None])
    tp = np.diagonal(called, axis1=-2, axis2=-1)
    fp = called.sum(-2) - tp
    fn = c.sum(-1) - tp  # no-calls of a class are missed images of that class
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no class present
        macro_f1 = np.nanmean(f1, axis=-1)
    return {
        "exact_agreement": _ratio(hits, n_called),
        "quadratic_weighted_kappa": 1.0 - _ratio((w * called).sum(axis=(-2, -1)),
                                                 (w * expected).sum(axis=(-2, -1))),
        "no_call_rate": _ratio(c[..., _NO_CALL_INDEX].sum(-1), n),
        "accuracy": _ratio(hits, n),
        "macro_f1": macro_f1,
    }


def _quadratic_weights(k: int) -> np.ndarray:
    """w_ij = (i - j)^2 / (k - 1)^2."""
    i = np.arange(k)
    return (i[:, None] - i[None, :]) ** 2 / (k - 1) ** 2


def _counts(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(4, 5) confusion counts: rows label, columns call (last column: no-call)."""
    from sklearn.metrics import confusion_matrix

    if len(t) == 0:
        return np.zeros((_K, _K + 1), dtype=np.int64)
    full = confusion_matrix(t, p, labels=list(range(_K + 1)))
    return full[:_K]


def bootstrap_intervals(counts: np.ndarray, *, n_boot: int = 2000, seed: int = 0,
                        ci: float = 0.95) -> dict[str, list[float] | None]:
    """Percentile bootstrap interval of each figure in ``CI_FIGURES`` (None when undefined).

    Resamples images with replacement: the resampled count matrix is multinomial over the
    observed cells (see the module docstring). Resamples where a figure is undefined (say, no
    call at all) are left out of that figure's interval.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be between 0 and 1, got {ci}")
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0 or n_boot < 1:
        return {name: None for name in CI_FIGURES}
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts.ravel() / n, size=n_boot).reshape(n_boot, *counts.shape)
    tail = 100 * (1 - ci) / 2
    out: dict[str, list[float] | None] = {}
    for name, values in figures_from_counts(draws).items():
        finite = values[np.isfinite(values)]
        out[name] = (None if finite.size == 0 else
                     [float(v) for v in np.percentile(finite, [tail, 100 - tail])])
    return out


# --------------------------------------------------------------------------- agreement


def _none_if_nan(value: Any) -> float | None:
    v = float(value)
    return None if math.isnan(v) else v


def _kappas(t: np.ndarray, p: np.ndarray) -> tuple[float | None, float | None]:
    """Cohen's kappa and quadratic-weighted kappa of the called images (None if undefined)."""
    from sklearn.metrics import cohen_kappa_score

    called = p != _NO_CALL_INDEX
    if not called.any():
        return None, None
    labels = list(range(_K))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined kappa (one class only): NaN -> None
        plain = cohen_kappa_score(t[called], p[called], labels=labels)
        quad = cohen_kappa_score(t[called], p[called], labels=labels, weights="quadratic")
    return _none_if_nan(plain), _none_if_nan(quad)


def _per_class(t: np.ndarray, p: np.ndarray, counts: np.ndarray) -> dict[str, dict[str, Any]]:
    """Precision, recall, specificity, F1 and support of each class (one-vs-rest)."""
    from sklearn.metrics import precision_recall_fscore_support

    if len(t):
        prec, rec, f1, support = precision_recall_fscore_support(
            t, p, labels=list(range(_K)), zero_division=np.nan)
    else:
        prec = rec = f1 = np.full(_K, np.nan)
        support = np.zeros(_K, dtype=np.int64)
    n = counts.sum()
    out = {}
    for k, name in enumerate(CLASSES):
        negatives = n - counts[k].sum()  # images whose label is not this class
        false_pos = counts[:, k].sum() - counts[k, k]
        out[name] = {
            "precision": _none_if_nan(prec[k]),
            "recall": _none_if_nan(rec[k]),
            "specificity": None if negatives == 0 else float((negatives - false_pos) / negatives),
            "f1": _none_if_nan(f1[k]),
            "support": int(support[k]),
        }
    return out


def _macro_f1(t: np.ndarray, p: np.ndarray) -> float | None:
    """Macro F1 over the classes that occur among the labels or the calls (scikit-learn's
    default label set, with no-calls as misses of their class)."""
    from sklearn.metrics import f1_score

    present = sorted(set(t.tolist()) | (set(p.tolist()) - {_NO_CALL_INDEX}))
    if not present:
        return None
    return _none_if_nan(f1_score(t, p, labels=present, average="macro", zero_division=np.nan))


def _aucs(t: np.ndarray, probs: Any) -> tuple[dict[str, float | None], float | None]:
    """One-vs-rest ROC AUC of each class and their mean over the classes where it is defined
    (both positive and negative images among those with finite probabilities)."""
    from sklearn.metrics import roc_auc_score

    per: dict[str, float | None] = {name: None for name in CLASSES}
    if probs is None:
        return per, None
    scores = np.asarray(probs, dtype=np.float64)
    if scores.shape != (len(t), _K):
        raise ValueError(f"probs must have shape ({len(t)}, {_K}), got {scores.shape}")
    usable = np.isfinite(scores).all(axis=1)
    for k, name in enumerate(CLASSES):
        positive = t[usable] == k
        if positive.any() and not positive.all():
            per[name] = float(roc_auc_score(positive, scores[usable, k]))
    defined = [v for v in per.values() if v is not None]
    return per, (float(np.mean(defined)) if defined else None)


def _confusion_3(counts: np.ndarray) -> np.ndarray:
    """(3, 4) counts of categories from the (4, 5) class counts (last column: no-call)."""
    group = np.array([CATEGORIES.index(_CATEGORY_OF[c]) for c in CLASSES])
    out = np.zeros((len(CATEGORIES), len(CATEGORIES) + 1), dtype=np.int64)
    for i in range(_K):
        for j in range(_K + 1):
            col = len(CATEGORIES) if j == _NO_CALL_INDEX else group[j]
            out[group[i], col] += counts[i, j]
    return out


def _matrix_dict(rows: Sequence[str], matrix: np.ndarray) -> dict[str, Any]:
    return {"rows": list(rows), "columns": [*rows, NO_CALL], "matrix": matrix.tolist()}


def agreement(y_true: Sequence[Any], y_pred: Sequence[Any], *, probs: Any = None,
              n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> dict[str, Any]:
    """Agreement of calls ``y_pred`` (None = no-call) with labels ``y_true``, as a JSON-able dict.

    Keys: n, n_called, no_call_rate, exact_agreement (over called images), exact_agreement_3
    (negative/equivocal/positive, over called images), accuracy (no-call = wrong),
    cohen_kappa, quadratic_weighted_kappa (both over called images), macro_f1, macro_auc
    (one-vs-rest, when ``probs`` (N, 4) are given), per_class, confusion_4, confusion_3 (rows
    label, columns call plus "no call") and ci (percentile bootstrap over images, for
    ``CI_FIGURES``). Undefined figures are None.
    """
    t, p = _indices(y_true, y_pred)
    counts = _counts(t, p)
    n, n_called = len(t), int((p != _NO_CALL_INDEX).sum())
    cohen, qwk = _kappas(t, p)
    per_class = _per_class(t, p, counts)
    auc_per_class, macro_auc = _aucs(t, probs)
    for name, value in auc_per_class.items():
        per_class[name]["auc"] = value
    conf3 = _confusion_3(counts)
    hits = int(np.trace(counts[:, :_K]))
    return {
        "classes": list(CLASSES),
        "n": n,
        "n_called": n_called,
        "no_call_rate": None if n == 0 else (n - n_called) / n,
        "exact_agreement": None if n_called == 0 else hits / n_called,
        "exact_agreement_3": None if n_called == 0 else int(np.trace(conf3[:, :3])) / n_called,
        "accuracy": None if n == 0 else hits / n,
        "cohen_kappa": cohen,
        "quadratic_weighted_kappa": qwk,
        "macro_f1": _macro_f1(t, p),
        "macro_auc": macro_auc,
        "per_class": per_class,
        "confusion_4": _matrix_dict(CLASSES, counts),
        "confusion_3": _matrix_dict(CATEGORIES, conf3),
        "ci": {"level": ci, "method": "percentile bootstrap, images resampled",
               "n_boot": n_boot, "seed": seed,
               **bootstrap_intervals(counts, n_boot=n_boot, seed=seed, ci=ci)},
    }


# --------------------------------------------------------------------------- text and plot


def _fmt(value: float | None, interval: Sequence[float] | None, *, percent: bool = False) -> str:
    """'0.61 [0.32, 0.85]' (or percentages); 'n/a' when undefined."""
    if value is None:
        return "n/a"
    form = (lambda v: f"{100 * v:.0f}%") if percent else (lambda v: f"{v:.2f}")
    text = form(value)
    return text if interval is None else f"{text} [{form(interval[0])}, {form(interval[1])}]"


def format_summary(result: dict[str, Any]) -> str:
    """One line of the key figures with their intervals."""
    ci = result.get("ci", {})
    level = f"{100 * ci.get('level', 0.95):.0f}% CI"
    return (f"n={result['n']}, called {result['n_called']}; "
            f"exact agreement {_fmt(result['exact_agreement'], ci.get('exact_agreement'))}; "
            f"QWK {_fmt(result['quadratic_weighted_kappa'], ci.get('quadratic_weighted_kappa'))}; "
            f"no-call {_fmt(result['no_call_rate'], ci.get('no_call_rate'), percent=True)} "
            f"({level})")


def _draw_matrix(ax: Any, confusion: dict[str, Any], title: str) -> None:
    """Counts as a heat map with the number in each cell."""
    matrix = np.asarray(confusion["matrix"], dtype=np.int64).reshape(
        len(confusion["rows"]), len(confusion["columns"]))
    top = max(int(matrix.max(initial=0)), 1)
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=top)
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=11,
                color="white" if v > top / 2 else "black")
    ax.set_xticks(range(matrix.shape[1]), confusion["columns"])
    ax.set_yticks(range(matrix.shape[0]), confusion["rows"])
    ax.set_xlabel("call")
    ax.set_ylabel("label")
    ax.set_title(title)


def plot_confusion(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write one PNG with the 4-class and 3-class confusion matrices and the key figures.

    Written atomically (a temporary file in the same folder, then renamed); an error gives
    :class:`~napari_her2.errors.OutputError` naming the file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    target = Path(path)
    fig = Figure(figsize=(11, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax4, ax3 = fig.subplots(1, 2, width_ratios=[5, 4])
    _draw_matrix(ax4, result["confusion_4"], "HER2 score")
    _draw_matrix(ax3, result["confusion_3"], "negative / equivocal / positive")
    fig.suptitle(format_summary(result).replace("; ", "\n", 1), fontsize=11)
    save_png_atomic(fig, target)
    return target


def save_png_atomic(fig: Any, target: Path) -> None:
    """Save a matplotlib figure as PNG: temporary file in the same folder, fsync, rename;
    an error gives :class:`~napari_her2.errors.OutputError` naming the file."""
    from ..export.atomic import atomic_write

    with atomic_write(target, binary=True) as f:
        fig.savefig(f, format="png")
