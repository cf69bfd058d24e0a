"""Splits keep images and groups whole; the 95% CI formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from her2_train.errors import TrainError
from her2_train.splits import ci95, holdout, kfold, monte_carlo

LABELS = [0, 0, 1, 1, 2, 2, 3, 3, 0, 1]
GROUPS = ["a", "a", "b", "c", "d", "d", "e", "f", "g", "h"]


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kfold_keeps_groups_whole_and_covers_all(k):
    folds = kfold(LABELS, GROUPS, k, seed=1)
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested.tolist()) == list(range(len(GROUPS)))
    for tr, te in folds:
        assert not set(tr) & set(te)
        assert not {GROUPS[i] for i in tr} & {GROUPS[i] for i in te}


def test_kfold_capped_at_group_count_and_seeded():
    assert len(kfold([0, 1, 2], ["x", "y", "z"], 10)) == 3
    assert [t.tolist() for _, t in kfold(LABELS, GROUPS, 3, seed=4)] == \
        [t.tolist() for _, t in kfold(LABELS, GROUPS, 3, seed=4)]


def test_kfold_needs_two_groups():
    with pytest.raises(TrainError, match="at least 2 groups"):
        kfold([0, 1], ["a", "a"], 2)


def test_monte_carlo_and_holdout_keep_groups_whole():
    for tr, te in monte_carlo(GROUPS, 5, test_size=0.3, seed=0):
        assert len(te) and not {GROUPS[i] for i in tr} & {GROUPS[i] for i in te}
    tr, va = holdout(GROUPS, 0.2, seed=0)
    assert len(va) and not {GROUPS[i] for i in tr} & {GROUPS[i] for i in va}
    assert len(holdout(["a", "b"], 0.5, 0)[1]) == 0  # too few groups to hold one out


def test_ci95_by_hand():
    r = ci95([0.5, 0.7, 0.9])
    half = 1.96 * 0.2 / math.sqrt(3)  # sd (ddof 1) of 0.5, 0.7, 0.9 is 0.2
    assert r["mean"] == pytest.approx(0.7)
    assert (r["lo"], r["hi"]) == pytest.approx((0.7 - half, 0.7 + half))
    assert ci95([None, 0.4])["k"] == 1 and ci95([])["mean"] is None
