"""Expected calibration error and the reliability plot (napari_her2.cohort.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_her2.cohort.calibration import (
    bin_of,
    expected_calibration_error,
    format_calibration,
    plot_reliability,
    reliability,
    top_label,
)


def test_bins_are_equal_width_and_closed_on_the_right():
    conf = np.array([0.0, 0.05, 0.1, 0.10001, 0.5, 0.95, 1.0])
    assert bin_of(conf).tolist() == [0, 0, 0, 1, 4, 9, 9]


def test_hand_computed_ece():
    # bin (0.5, 0.6]: confidences 0.6, 0.6 -> 1 of 2 right: gap |0.5 - 0.6| = 0.1
    # bin (0.9, 1.0]: confidences 1.0, 0.95 -> 2 of 2 right: gap |1 - 0.975| = 0.025
    report = reliability([0.6, 0.6, 1.0, 0.95], [True, False, True, True])
    assert report["ece"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.025)
    assert report["n"] == 4 and report["bins"] == 10 and len(report["per_bin"]) == 10
    assert [b["n"] for b in report["per_bin"]] == [0, 0, 0, 0, 0, 2, 0, 0, 0, 2]
    row = report["per_bin"][5]
    assert (row["lo"], row["hi"]) == (0.5, 0.6)
    assert row["confidence"] == pytest.approx(0.6) and row["accuracy"] == 0.5
    assert report["per_bin"][0]["accuracy"] is None


def test_a_perfectly_calibrated_set_has_an_ece_near_zero():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.25, 1.0, 200_000)
    correct = rng.uniform(size=conf.size) < conf  # right exactly as often as it says
    assert reliability(conf, correct)["ece"] < 0.01


def test_an_over_confident_set_has_a_large_ece():
    rng = np.random.default_rng(1)
    n = 4000
    probs = np.full((n, 4), 0.001)
    calls = rng.integers(0, 4, n)
    probs[np.arange(n), calls] = 0.997  # ~100% sure, right one time in four
    labels = rng.integers(0, 4, n)
    ece = expected_calibration_error(probs, labels)
    assert ece == pytest.approx(0.997 - np.mean(calls == labels), abs=1e-9)
    assert ece > 0.7


def test_top_label_and_empty_input():
    conf, hit = top_label(np.array([[0.2, 0.8], [0.6, 0.4]]), [1, 1])
    assert conf.tolist() == [0.8, 0.6] and hit.tolist() == [True, False]
    empty = reliability([], [])
    assert empty["ece"] is None and empty["n"] == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability([1.5], [True])
    with pytest.raises(ValueError, match="confidences but"):
        reliability([0.5, 0.5], [True])


def test_reliability_png_and_summary_text(tmp_path):
    report = reliability([0.6, 0.6, 1.0, 0.95], [True, False, True, True])
    report["left_out_no_calls"] = 2
    assert format_calibration(report) == "ECE 0.06 over 4 calls (2 no-calls left out)"
    path = plot_reliability(report, tmp_path / "r.png", title="model")
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    empty = plot_reliability(reliability([], []), tmp_path / "e.png")
    assert empty.is_file()
    assert format_calibration(reliability([], [])) == "ECE n/a over 0 calls"
