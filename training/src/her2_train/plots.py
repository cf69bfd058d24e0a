"""Plots of a run: confusion matrices (napari-her2's) and training curves (matplotlib)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)


def plot_curves(histories: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Loss and validation macro-F1 per epoch, one line per fold / final model."""
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in histories.items():
        epochs = [r["epoch"] for r in rows]
        ax_loss.plot(epochs, [r["loss"] for r in rows], label=name)
        f1 = [(r["epoch"], r["val_macro_f1"]) for r in rows if "val_macro_f1" in r]
        if f1:
            ax_f1.plot(*zip(*f1, strict=True), label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Loss")
    ax_f1.set(xlabel="epoch", ylabel="macro F1", title="Validation macro F1", ylim=(0, 1))
    for ax in (ax_loss, ax_f1):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusions(result: dict[str, Any], path: Path) -> Path | None:
    """The confusion matrices of an evaluation via napari-her2 (None when unavailable)."""
    report = result.get("agreement")
    if report is None:
        return None
    from napari_her2.cohort.metrics import plot_confusion

    plot_confusion(report, path)
    return path
