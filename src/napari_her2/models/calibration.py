"""Temperature scaling of a learned model's logits (Guo et al. 2017).

A network trained with cross-entropy is often over-confident: its softmax probabilities are
higher than its accuracy. ``her2-train`` fits one scalar temperature T > 0 on the
out-of-fold predictions of its cross-validation (the T that minimises their negative
log-likelihood) and stores it in the model card::

    metrics["calibration"] = {"temperature": T, "ece_before": ..., "ece_after": ...,
                              "n": ..., "bins": 10, "fitted_on": "..."}

The plugin divides the logits by T before the softmax: tile CNNs in
:class:`~napari_her2.models.TorchTilePredictor`, every MIL bag and the WHSPN MLP in
:mod:`napari_her2.scoring.slide_models`. Dividing by a positive number keeps the order of the
logits, so the arg-max class of a tile, a bag or a WHSPN slide never changes, only how sure
the model says it is. A card without a temperature, or with ``"temperature": null`` (the WHSPN
SVM, whose one-hot decisions have no logits to scale), leaves the probabilities unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

#: key of the calibration section in a card's ``metrics``
CALIBRATION_KEY = "calibration"
#: temperatures a card may hold (a card read from a file is untrusted input)
TEMPERATURE_RANGE = (0.01, 100.0)


def temperature_in(metrics: Mapping[str, Any]) -> float | None:
    """The temperature in a card's ``metrics``; None without one.

    Raises ValueError when the calibration section is not an object or its temperature is
    not a finite number within :data:`TEMPERATURE_RANGE`."""
    section = metrics.get(CALIBRATION_KEY)
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise ValueError(f"metrics[{CALIBRATION_KEY!r}] must be an object")
    value = section.get("temperature")
    if value is None:
        return None
    lo, hi = TEMPERATURE_RANGE
    ok = (not isinstance(value, bool) and isinstance(value, int | float)
          and lo <= value <= hi and math.isfinite(value))  # range first: huge ints
    if not ok:
        text = repr(value) if not isinstance(value, int) else "an integer out of range"
        raise ValueError(f"calibration temperature must be a number in {lo:g}..{hi:g}, "
                         f"got {text[:40]}")
    return float(value)


def scale_logits(logits: torch.Tensor, temperature: float | None) -> torch.Tensor:
    """``logits / temperature`` (the logits themselves when there is no temperature)."""
    return logits if temperature is None else logits / temperature


def softmax_at(logits: torch.Tensor, temperature: float | None, dim: int = -1) -> torch.Tensor:
    """softmax(logits / T) along ``dim``; the plain softmax when ``temperature`` is None."""
    return torch.softmax(scale_logits(logits, temperature), dim=dim)
