"""Temperature scaling fitted on the held-out folds of cross-validation (Guo et al. 2017).

Every image (or tile) that cross-validation predicts is predicted by a model that never saw
it: these out-of-fold logits are a held-out set the size of the data. One scalar T > 0 is
fitted on them by minimising the negative log-likelihood of their labels under
softmax(logits / T) (:func:`fit_temperature`: a bounded search over log T), and the expected
calibration error (ECE, :mod:`napari_her2.cohort.calibration`: 10 equal-width bins over the
confidence of the arg-max class) is measured before and after. The card of the final model
stores the result under ``metrics["calibration"]``; the plugin divides that model's logits
by T (:mod:`napari_her2.models.calibration`).

Logits are (N, C), one row per prediction, or (N, B, C) for Monte-Carlo MIL, whose slide
probability is the mean of its B bag softmaxes (as the plugin computes it): T scales every
bag's logits. The fold models stand in for the final model, which is trained on all images:
T is the temperature of the training procedure, measured where it can be measured.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from napari_her2.cohort.calibration import BINS, expected_calibration_error
from napari_her2.models.calibration import TEMPERATURE_RANGE
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp

log = logging.getLogger(__name__)

FITTED_ON = "out-of-fold predictions of k-fold CV"
#: the temperature search stays inside what a card may hold
LOG_T_BOUNDS = (math.log(TEMPERATURE_RANGE[0]), math.log(TEMPERATURE_RANGE[1]))
#: stored instead of a temperature for a model whose outputs are decisions, not logits
NOT_CALIBRATED_SVM = {
    "temperature": None,
    "note": "the WHSPN SVM outputs one-hot decisions (vote counts), not logits: temperature "
            "scaling cannot calibrate it, so no temperature is stored",
}


def _bags(logits: np.ndarray) -> np.ndarray:
    """Logits as (N, B, C) float64 (B = 1 for plain (N, C) logits)."""
    z = np.asarray(logits, np.float64)
    if z.ndim == 2:
        z = z[:, None, :]
    if z.ndim != 3:
        raise ValueError(f"logits must be (N, C) or (N, B, C), got shape {z.shape}")
    return z


def log_probs_at(logits: np.ndarray, temperature: float) -> np.ndarray:
    """(N, C) log of the class probabilities at ``temperature`` (mean over bags)."""
    z = _bags(logits)
    per_bag = log_softmax(z / temperature, axis=-1)
    return logsumexp(per_bag, axis=1) - math.log(z.shape[1])


def probs_at(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, C) softmax(logits / T), averaged over bags for (N, B, C) logits."""
    return np.exp(log_probs_at(logits, temperature))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of integer ``labels`` at ``temperature``."""
    lp = log_probs_at(logits, temperature)
    y = np.asarray(labels, int)
    return float(-lp[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 (within the card's range) that minimises :func:`nll` over the labels."""
    y = np.asarray(labels, int)
    if len(y) == 0:
        raise ValueError("no prediction to fit a temperature on")
    res = minimize_scalar(lambda u: nll(logits, y, math.exp(u)), bounds=LOG_T_BOUNDS,
                          method="bounded", options={"xatol": 1e-5})
    return float(math.exp(res.x))


def assess(logits: np.ndarray, labels: np.ndarray, temperature: float,
           bins: int = BINS) -> dict[str, Any]:
    """ECE and NLL of some predictions before (T = 1) and after ``temperature``."""
    y = np.asarray(labels, int)
    return {"n": int(len(y)),
            "ece_before": _round(expected_calibration_error(probs_at(logits), y, bins)),
            "ece_after": _round(expected_calibration_error(probs_at(logits, temperature), y,
                                                           bins)),
            "nll_before": _round(nll(logits, y, 1.0)),
            "nll_after": _round(nll(logits, y, temperature))}


def calibrate(logits: np.ndarray, labels: np.ndarray, bins: int = BINS, *,
              fitted_on: str = FITTED_ON) -> dict[str, Any] | None:
    """Fit T on out-of-fold ``logits`` and report it with the ECE before and after (the
    card's ``metrics["calibration"]``); None when there is no labelled prediction."""
    y = np.asarray(labels, int)
    keep = y >= 0
    if not keep.any():
        log.warning("no labelled out-of-fold prediction: no temperature is fitted")
        return None
    z, y = _bags(logits)[keep], y[keep]
    temperature = round(fit_temperature(z, y), 4)
    lo, hi = TEMPERATURE_RANGE
    result = {"temperature": temperature, **assess(z, y, temperature, bins), "bins": bins,
              "fitted_on": fitted_on}
    if not lo * 1.001 < temperature < hi * 0.999:
        result["note"] = (f"the fit reached the bound of {lo:g}..{hi:g}: the held-out "
                          "predictions carry almost no information about their labels")
    log.info("temperature %.4g fitted on %d out-of-fold predictions: ECE %.3f -> %.3f",
             temperature, result["n"], result["ece_before"], result["ece_after"])
    return result


def external_calibration(logits: np.ndarray, labels: np.ndarray,
                         calibration: dict[str, Any] | None) -> dict[str, Any] | None:
    """The calibration dict with the external test's ECE before/after its temperature."""
    if calibration is None or calibration.get("temperature") is None:
        return calibration
    y = np.asarray(labels, int)
    keep = y >= 0
    if not keep.any():
        return calibration
    ext = assess(_bags(logits)[keep], y[keep], calibration["temperature"],
                 calibration.get("bins", BINS))
    return {**calibration, "external": ext}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
