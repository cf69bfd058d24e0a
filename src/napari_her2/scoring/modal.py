"""The one rule by which a slide call and its confidence are made from outcome shares.

Every way of calling a slide ends in shares of the four HER2 scores: the share of the
guideline rule's resamplings that give each score, or a slide model's class probabilities.
:func:`modal_call` turns them into the call: the most frequent score (the *modal outcome*),
its share as the confidence, and, when that share is below one half or another score is as
frequent, the **borderline** pair: the two most frequent scores, ordered low / high.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..classes import HER2_SCORES

#: a call whose share is below this is borderline
BORDERLINE_BELOW = 0.5


@dataclass(frozen=True)
class ModalCall:
    """score: index 0..3 of the modal score; share: its share (the confidence);
    borderline: (low, high) indices of the two most frequent scores, or None."""

    score: int
    share: float
    borderline: tuple[int, int] | None


def _ranking(shares: np.ndarray, preferred: int | None) -> np.ndarray:
    """Score indices from most to least frequent; ties go to ``preferred``, then lower."""
    first = np.zeros(len(shares), bool)
    if preferred is not None and 0 <= preferred < len(shares):
        first[preferred] = True
    return np.lexsort((np.arange(len(shares)), ~first, -shares))


def modal_call(shares: Sequence[float] | np.ndarray, preferred: int | None = None) -> ModalCall:
    """The call of (4,) score shares that sum to one; ``preferred`` breaks ties (e.g. the
    score of the tiles as called)."""
    s = np.asarray(shares, np.float64)
    order = _ranking(s, preferred)
    top, second = int(order[0]), int(order[1])
    share = float(s[top])
    tied = s[second] > 0 and np.isclose(s[second], share)
    if share < BORDERLINE_BELOW or tied:
        return ModalCall(top, share, (min(top, second), max(top, second)))
    return ModalCall(top, share, None)


def modal_of_named(shares: Mapping[str, float], preferred: str | None = None) -> ModalCall:
    """:func:`modal_call` of shares keyed by HER2 score names (missing scores are 0)."""
    vector = [float(shares.get(s, 0.0)) for s in HER2_SCORES]
    pick = HER2_SCORES.index(preferred) if preferred in HER2_SCORES else None
    return modal_call(vector, pick)


def pair_names(pair: tuple[int, int] | None) -> tuple[str, str] | None:
    """A borderline pair of score indices as names ("0", "1+")."""
    return None if pair is None else (HER2_SCORES[pair[0]], HER2_SCORES[pair[1]])
