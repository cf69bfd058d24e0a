"""Headline figures against values computed by hand; plots are written."""

from __future__ import annotations

import numpy as np
import pytest

from her2_train.evaluation import evaluate, summary
from her2_train.plots import plot_confusions, plot_curves


def test_summary_by_hand():
    # truth 0,1,2,3; prediction 0,1,1,3: one 2+ called 1+
    s = summary(np.array([0, 1, 2, 3]), np.array([0, 1, 1, 3]))
    assert s["n"] == 4 and s["accuracy"] == pytest.approx(0.75)
    # per-class F1: 1, 2/3 (precision 1/2, recall 1), 0, 1
    assert s["macro_f1"] == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    # po = 3/4, pe = (1*1 + 1*2 + 1*0 + 1*1) / 16 = 1/4 -> (3/4 - 1/4) / (3/4)
    assert s["kappa"] == pytest.approx(2 / 3)
    # quadratic weights (i-j)^2/9: observed 1/36, expected 10/36 -> 1 - 1/10
    assert s["qwk"] == pytest.approx(0.9)


def test_single_class_kappa_is_undefined_and_empty_is_none():
    s = summary(np.array([2, 2]), np.array([2, 2]))
    assert s["accuracy"] == 1.0 and s["kappa"] is None and s["qwk"] is None
    assert summary(np.array([]), np.array([]))["accuracy"] is None


def test_evaluate_adds_agreement_and_plots(tmp_path):
    y = np.array([0, 1, 2, 3, 1, 2])
    probs = np.eye(4)[[0, 1, 1, 3, 1, 2]] * 0.7 + 0.075
    result = evaluate(y, probs.argmax(1), probs, seed=0)
    if result["agreement"] is not None:
        assert result["agreement"]["n"] == 6
        assert plot_confusions(result, tmp_path / "c.png").stat().st_size > 1000
    curve = plot_curves({"a": [{"epoch": 1, "loss": 1.0, "val_macro_f1": 0.2},
                               {"epoch": 2, "loss": 0.5, "val_macro_f1": 0.4}]},
                        tmp_path / "curve.png")
    assert curve.stat().st_size > 1000
