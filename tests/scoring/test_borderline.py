"""One computation makes the call and its confidence: the modal outcome of the resamplings,
borderline between the two most frequent scores when its share is below one half."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_her2.classes import HER2_SCORES, LABEL_VALUES
from napari_her2.scoring import (
    NoCallReason,
    call_from_model,
    call_from_rule,
    score_labels,
    score_tiles,
)
from napari_her2.scoring.modal import modal_call
from napari_her2.tiles.results import TileResults

CLASSES = ("0", "1+", "2+", "3+", "non-tumour")


def results_of(probs) -> TileResults:
    probs = np.asarray(probs, np.float32)
    n = len(probs)
    return TileResults(classes=CLASSES, feature_names=(), grid_shape=(1, max(n, 1)),
                       origin0=(0.0, 0.0), tile_size0=(256.0, 256.0),
                       rows=np.zeros(n, np.int32), cols=np.arange(n, dtype=np.int32),
                       probs=probs, features=np.zeros((n, 0), np.float32),
                       readable=np.ones(n, bool))


def oesophageal_core() -> TileResults:
    """3 of 31 tumour tiles 2+ (9.7%, under the 10% cut: called 0 from arg-max classes),
    and 28 tiles called 0 that are each 10% 1+. Read together, those 28 are 1+ in 10% of the
    resamplings (all of them at once): 0 in 90%, 1+ in 10%."""
    return results_of([[0.9, 0.1, 0, 0, 0]] * 28 + [[0, 0.05, 0.95, 0, 0]] * 3)


def zero_one_borderline() -> TileResults:
    """5 of 50 tiles 2+ (10%, not over the cut) and 45 tiles called 0 that are 48% 0, 30% 1+,
    22% 2+: 0 in 48% of the resamplings, 1+ in 30%, 2+ in 22%."""
    return results_of([[0, 0, 1, 0, 0]] * 5 + [[0.48, 0.30, 0.22, 0, 0]] * 45)


def one_two_borderline() -> TileResults:
    """Like :func:`zero_one_borderline` one class up: 5 tiles 0 and 45 tiles called 1+ that
    are 46% 1+, 34% 2+, 20% 3+: 1+ and 2+ each in under half of the resamplings."""
    return results_of([[1, 0, 0, 0, 0]] * 5 + [[0, 0.46, 0.34, 0.20, 0]] * 45)


def assert_consistent(score) -> None:
    """The invariants every rule score keeps."""
    for s in HER2_SCORES:
        lo, hi = score.class_fraction_intervals[s]
        assert lo <= score.class_fractions[s] <= hi, (s, lo, score.class_fractions[s], hi)
    if score.confidence is None:
        assert score.borderline is None
        return
    assert score.confidence == pytest.approx(score.score_shares[score.score])
    assert score.confidence == pytest.approx(max(score.score_shares.values()))
    assert score.confidence >= 0.5 or score.borderline is not None
    if score.borderline is not None:
        low, high = score.borderline
        assert score.score in score.borderline
        assert HER2_SCORES.index(low) < HER2_SCORES.index(high)
        top_two = sorted(score.score_shares.values())[-2:]
        assert sorted(score.score_shares[s] for s in score.borderline) == pytest.approx(top_two)


# --------------------------------------------------------------------------- the rule


def test_the_call_at_a_boundary_is_the_modal_outcome():
    score = score_tiles(oesophageal_core())
    assert score.class_fractions["2+"] == pytest.approx(3 / 31)  # 9.7%
    assert score.as_called == "0"  # what the arg-max classes alone give
    assert score.score == "0" and score.borderline is None
    assert score.confidence == pytest.approx(0.9, abs=0.03)
    # the call and P(>= 1+) come from the same resamplings: they cannot contradict each other
    assert score.confidence == pytest.approx(1 - score.her2_low.p_at_least_1plus)
    assert_consistent(score)


def test_a_split_call_is_borderline_ordered_low_high():
    score = score_tiles(zero_one_borderline())
    assert score.as_called == "0" and score.score == "0"
    assert score.borderline == ("0", "1+")
    assert score.confidence < 0.5
    assert_consistent(score)
    d = json.loads(json.dumps(score.to_dict(), allow_nan=False))
    assert d["borderline"] == ["0", "1+"] and d["as_called"] == "0"


def test_the_borderline_call_renders_everywhere_in_words():
    call = call_from_rule(score_tiles(zero_one_borderline()))
    shares = call.evidence.score_shares
    assert call.borderline == ("0", "1+")
    assert call.headline() == (
        f"HER2 borderline 0 / 1+: review (0 in {100 * shares['0']:.0f}% of resamplings, "
        f"1+ in {100 * shares['1+']:.0f}%) by asco-cap-breast-2023")
    assert call.score_text() == "0 / 1+"
    assert call.category == "negative"
    assert call.category_text() == "negative, borderline: review"
    d = call.to_dict()
    assert d["borderline"] == ["0", "1+"] and d["confidence"] == call.confidence
    assert d["evidence"]["score_shares"] == shares
    json.dumps(d, allow_nan=False)
    assert call.without_score(NoCallReason.STAIN_CHECK).borderline is None


def test_a_pair_across_categories_says_so():
    call = call_from_rule(score_tiles(one_two_borderline()))
    assert call.borderline == ("1+", "2+")
    assert call.category_text() == "negative / equivocal: review"
    assert call.headline().startswith("HER2 borderline 1+ / 2+ (negative / equivocal): review (")


def test_a_clear_call_is_unchanged():
    res = results_of([[0, 0, 0, 1, 0]] * 5 + [[1, 0, 0, 0, 0]] * 10)
    call = call_from_rule(score_tiles(res))
    assert call.borderline is None and call.score == "3+" and call.confidence == 1.0
    assert call.headline() == "HER2 3+ (positive), confidence 1.00 by asco-cap-breast-2023"
    assert call.score_text() == "3+" and call.category_text() == "positive"


probability_rows = arrays(np.float64, st.tuples(st.integers(1, 40), st.just(len(CLASSES))),
                          elements=st.floats(0, 1, allow_nan=False, width=32))


@settings(max_examples=60, deadline=None)
@given(raw=probability_rows, seed=st.integers(0, 2**16), n_samples=st.integers(10, 300))
def test_every_rule_score_keeps_its_invariants(raw, seed, n_samples):
    raw = raw + 1e-3  # no all-zero row
    probs = raw / raw.sum(axis=1, keepdims=True)
    score = score_tiles(results_of(probs), n_samples=n_samples, seed=seed)
    assert_consistent(score)
    call = call_from_rule(score)
    assert call.confidence is None or call.confidence >= 0.5 or call.borderline is not None


@settings(max_examples=60, deadline=None)
@given(labels=arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 12)),
                     elements=st.sampled_from(sorted(set(LABEL_VALUES.values()) | {0}))),
       seed=st.integers(0, 2**16))
def test_hand_edited_labels_keep_the_invariants(labels, seed):
    assert_consistent(score_labels(labels, n_samples=200, seed=seed))


def test_hand_edits_at_the_boundary_are_borderline_too():
    img = np.full((10, 10), LABEL_VALUES["0"], np.uint8)
    img.ravel()[:10] = LABEL_VALUES["2+"]  # 2+ at exactly 10%
    img.ravel()[10] = LABEL_VALUES["1+"]  # >= 1+ at 11%: called 1+ as labelled
    score = score_labels(img, n_samples=2000, seed=0)
    assert score.as_called == "1+"
    assert score.borderline is not None and score.confidence < 0.5
    assert_consistent(score)
    assert call_from_rule(score).borderline == score.borderline


# --------------------------------------------------------------------------- slide models


def _rule():
    return score_tiles(results_of([[1, 0, 0, 0, 0]] * 10), n_samples=20)


def test_a_slide_model_under_one_half_is_borderline_between_its_top_two():
    probs = {"0": 0.30, "1+": 0.45, "2+": 0.2, "3+": 0.05}
    call = call_from_model("1+", probs, "whspn-mlp", _rule())
    assert call.score == "1+" and call.confidence == pytest.approx(0.45)
    assert call.borderline == ("0", "1+")
    assert "HER2 borderline 0 / 1+: review (P(0) 0.30, P(1+) 0.45) by whspn-mlp" == call.headline()
    assert call.to_dict()["borderline"] == ["0", "1+"]


def test_a_pair_that_is_no_lean_names_the_rest():
    """Near-uniform shares: the two most frequent scores are named, and the others, as
    frequent together, are not hidden behind them."""
    spread = call_from_model("3+", {"0": 0.22, "1+": 0.23, "2+": 0.27, "3+": 0.28}, "m", _rule())
    assert spread.borderline == ("2+", "3+")
    assert spread.borderline_shares() == "P(2+) 0.27, P(3+) 0.28, P(other) 0.45"
    assert "P(other) 0.45" in spread.headline()
    lean = call_from_model("1+", {"0": 0.30, "1+": 0.45, "2+": 0.2, "3+": 0.05}, "m", _rule())
    assert "other" not in lean.borderline_shares()


def test_a_rule_call_spread_over_all_scores_names_the_rest():
    score = score_tiles(results_of([[0.25, 0.25, 0.25, 0.25, 0]] * 40), n_samples=400, seed=3)
    call = call_from_rule(score)
    assert call.borderline is not None
    assert "the other scores in" in call.borderline_shares()
    rest = 1 - sum(score.score_shares[s] for s in call.borderline)
    assert f"the other scores in {100 * rest:.0f}%" in call.headline()


def test_a_sure_slide_model_is_not_borderline_and_a_tie_is():
    sure = call_from_model("2+", {"0": 0.1, "1+": 0.1, "2+": 0.6, "3+": 0.2}, "m", _rule())
    assert sure.borderline is None and sure.confidence == pytest.approx(0.6)
    tie = call_from_model("3+", {"0": 0, "1+": 0, "2+": 0.5, "3+": 0.5}, "m", _rule())
    assert tie.score == "3+" and tie.borderline == ("2+", "3+")
    assert tie.category_text() == "equivocal / positive: review"


def test_modal_call_ties_go_to_the_preferred_score_then_the_lower():
    assert modal_call([0.4, 0.4, 0.2, 0.0], preferred=1).score == 1
    assert modal_call([0.4, 0.4, 0.2, 0.0]).score == 0
    assert modal_call([0.4, 0.4, 0.2, 0.0]).borderline == (0, 1)
    assert modal_call([0.1, 0.0, 0.3, 0.6]).borderline is None
    assert modal_call([0.45, 0.0, 0.1, 0.45], preferred=3).borderline == (0, 3)
