"""Does a confidence mean what it says? Expected calibration error and the reliability plot.

A call made with confidence 0.9 should be right 9 times in 10. The calls are put in
:data:`BINS` equal-width bins over the confidence of the called class, ``(0, 0.1]``,
``(0.1, 0.2]``, ..., ``(0.9, 1]`` (a confidence of 0 goes to the first); in each bin the share
of right calls (accuracy) is set against the mean confidence. The expected calibration error
(ECE; Naeini et al. 2015, Guo et al. 2017) is the mean gap, each bin weighted by its share of
the calls: ``ECE = sum_b n_b / n * |accuracy_b - confidence_b|``. 0 is perfectly calibrated;
a model that says 100% and is right one time in eight has an ECE near 0.87.

Pure numpy (matplotlib only inside :func:`plot_reliability`), shared by ``napari-her2
evaluate`` and the training package (its temperature scaling is judged by this ECE).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import save_png_atomic

#: equal-width confidence bins of the ECE and the reliability plot
BINS = 10


def bin_of(confidence: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Bin index 0..bins-1 of each confidence: ``(b/bins, (b+1)/bins]``, 0 in the first."""
    inner = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.digitize(np.asarray(confidence, float), inner, right=True)


def reliability(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray,
                bins: int = BINS) -> dict[str, Any]:
    """ECE and the per-bin table of calls with these confidences (right or wrong).

    Returns ``{"ece", "n", "bins", "per_bin": [{"lo", "hi", "n", "confidence",
    "accuracy"}]}``; ``ece`` is None without a call, a bin's means are None when it is empty.
    Raises ValueError for confidences outside [0, 1] or mismatched lengths.
    """
    conf = np.asarray(confidence, float).ravel()
    hit = np.asarray(correct, bool).ravel()
    if conf.shape != hit.shape:
        raise ValueError(f"{conf.size} confidences but {hit.size} right/wrong values")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if conf.size and not (np.isfinite(conf).all() and conf.min() >= 0 and conf.max() <= 1):
        raise ValueError("confidences must be finite numbers in [0, 1]")
    index = bin_of(conf, bins)
    n = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=conf, minlength=bins)
    hit_sum = np.bincount(index, weights=hit.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, accuracy = conf_sum / n, hit_sum / n
    gaps = np.where(n > 0, np.abs(np.nan_to_num(accuracy) - np.nan_to_num(mean_conf)), 0.0)
    ece = float((n * gaps).sum() / conf.size) if conf.size else None
    edges = np.linspace(0.0, 1.0, bins + 1)
    per_bin = [{"lo": round(float(edges[b]), 6), "hi": round(float(edges[b + 1]), 6),
                "n": int(n[b]),
                "confidence": float(mean_conf[b]) if n[b] else None,
                "accuracy": float(accuracy[b]) if n[b] else None} for b in range(bins)]
    return {"ece": ece, "n": int(conf.size), "bins": bins, "per_bin": per_bin}


def top_label(probs: np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence of the arg-max class, whether it is the label) of (N, C) probabilities."""
    p = np.asarray(probs, float)
    y = np.asarray(labels, int)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs must be (N, C) with N = {y.shape[0]} labels, got {p.shape}")
    return p.max(axis=1), p.argmax(axis=1) == y


def expected_calibration_error(probs: np.ndarray, labels: Sequence[int] | np.ndarray,
                               bins: int = BINS) -> float | None:
    """Top-label ECE of (N, C) class probabilities against integer labels (None if N = 0)."""
    confidence, correct = top_label(probs, labels)
    return reliability(confidence, correct, bins)["ece"]


def format_calibration(report: dict[str, Any]) -> str:
    """'ECE 0.12 over 9 calls (3 no-calls left out)' for the one-line summary."""
    ece = report.get("ece")
    text = f"ECE {ece:.2f}" if ece is not None else "ECE n/a"
    text += f" over {report.get('n', 0)} calls"
    left = report.get("left_out_no_calls", 0)
    return text + (f" ({left} no-call{'s' if left != 1 else ''} left out)" if left else "")


def plot_reliability(report: dict[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """Write the reliability diagram of :func:`reliability`'s ``report`` as a PNG.

    Accuracy per bin (bars) against the bin's mean confidence (dots), the diagonal of perfect
    calibration, and the number of calls above each bin. Written atomically; an error gives
    :class:`~napari_her2.errors.OutputError` naming the file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    target = Path(path)
    fig = Figure(figsize=(5.5, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    _draw_reliability(ax, report)
    ax.set_title((f"{title}\n" if title else "") + format_calibration(report), fontsize=10)
    save_png_atomic(fig, target)
    return target


def _draw_reliability(ax: Any, report: dict[str, Any]) -> None:
    rows = report["per_bin"]
    width = rows[0]["hi"] - rows[0]["lo"] if rows else 0.1
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    full = [r for r in rows if r["n"]]
    ax.bar([r["lo"] + width / 2 for r in full], [r["accuracy"] for r in full], width=width,
           edgecolor="black", color="tab:blue", alpha=0.7, label="accuracy")
    ax.plot([r["confidence"] for r in full], [r["accuracy"] for r in full], "o",
            color="tab:red", ms=4, label="mean confidence")
    for r in rows:
        ax.text(r["lo"] + width / 2, min((r["accuracy"] or 0) + 0.02, 1.02), f"n={r['n']}",
                ha="center", va="bottom", fontsize=7, color="black" if r["n"] else "grey")
    if not full:
        ax.text(0.5, 0.5, "no calls", ha="center", va="center", fontsize=12)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence of the called class")
    ax.set_ylabel("accuracy (share of calls that are right)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8)
