"""Temperature scaling: the fit recovers a known temperature; the ECE falls after it."""

from __future__ import annotations

import numpy as np
import pytest
from napari_her2.models.calibration import TEMPERATURE_RANGE

from her2_train.calibration import (
    calibrate,
    external_calibration,
    fit_temperature,
    nll,
    probs_at,
)


def over_confident(n: int, temperature: float, bags: int = 0, seed: int = 0):
    """Logits whose labels are drawn from softmax(logits / temperature): a model that is
    ``temperature`` times too sure of itself."""
    rng = np.random.default_rng(seed)
    shape = (n, bags, 4) if bags else (n, 4)
    z = rng.normal(0.0, 4.0, shape)
    p = probs_at(z, temperature)
    y = (p.cumsum(1) > rng.uniform(size=(n, 1))).argmax(1)
    return z, y


@pytest.mark.parametrize("t0", [0.5, 1.0, 3.0])
def test_fit_recovers_a_known_temperature(t0):
    z, y = over_confident(6000, t0)
    assert fit_temperature(z, y) == pytest.approx(t0, rel=0.1)


def test_fit_recovers_the_temperature_of_monte_carlo_bags():
    z, y = over_confident(6000, 3.0, bags=4)
    assert fit_temperature(z, y) == pytest.approx(3.0, rel=0.15)


def test_probs_at_is_softmax_of_scaled_logits_averaged_over_bags():
    z = np.array([[[2.0, 0.0], [0.0, 2.0]]])
    p = probs_at(z, 2.0)
    assert p.shape == (1, 2) and np.allclose(p, [[0.5, 0.5]])
    one = np.array([[3.0, 1.0]])
    e = np.exp(one / 2.0)
    assert np.allclose(probs_at(one, 2.0), e / e.sum())


def test_calibrate_reports_the_fit_and_the_ece_before_and_after():
    z, y = over_confident(4000, 3.0, seed=1)
    cal = calibrate(z, y)
    assert cal["temperature"] == pytest.approx(3.0, rel=0.1)
    assert cal["n"] == 4000 and cal["bins"] == 10
    assert cal["fitted_on"] == "out-of-fold predictions of k-fold CV"
    assert cal["ece_before"] > 0.2 and cal["ece_after"] < 0.05
    assert cal["nll_after"] < cal["nll_before"]
    assert "note" not in cal
    z2, y2 = over_confident(2000, 3.0, seed=2)
    ext = external_calibration(z2, y2, cal)["external"]
    assert ext["n"] == 2000 and ext["ece_after"] < ext["ece_before"]


def test_unlabelled_predictions_are_left_out():
    z, y = over_confident(500, 2.0)
    y[:100] = -1
    assert calibrate(z, y)["n"] == 400
    assert calibrate(z[:3], np.full(3, -1)) is None


def test_a_model_no_better_than_chance_is_flattened_to_the_bound():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 5, (3000, 4))
    y = rng.integers(0, 4, 3000)  # labels unrelated to the logits
    cal = calibrate(z, y)
    assert cal["temperature"] > 20 and cal["ece_after"] < 0.05
    assert nll(z, y, cal["temperature"]) < nll(z, y, 1.0)
    assert cal["temperature"] <= TEMPERATURE_RANGE[1]
