"""Slide scores from tiles: ASCO/CAP cascades, gastric rules, confidence, hand-edited labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_her2.classes import LABEL_VALUES
from napari_her2.scoring import rules
from napari_her2.scoring.rules import (
    RuleParams,
    SlideScore,
    get_rule,
    rule_scorer,
    score_labels,
    score_tiles,
)
from napari_her2.tiles.results import TileResults

CLASSES = ("0", "1+", "2+", "3+", "non-tumour")


def results_from(outcomes: list[str], probs: np.ndarray | None = None,
                 classes: tuple[str, ...] = CLASSES) -> TileResults:
    """Tiles in one row; one-hot probabilities unless given; 'unreadable' marks bad tiles."""
    n = len(outcomes)
    readable = np.array([o != "unreadable" for o in outcomes], bool)
    if probs is None:
        probs = np.zeros((n, len(classes)), np.float32)
        for i, o in enumerate(outcomes):
            if o != "unreadable":
                probs[i, classes.index(o)] = 1.0
    probs = np.asarray(probs, np.float32).copy()
    probs[~readable] = np.nan
    return TileResults(classes=classes, feature_names=(), grid_shape=(1, max(n, 1)),
                       origin0=(0.0, 0.0), tile_size0=(256.0, 256.0),
                       rows=np.zeros(n, np.int32), cols=np.arange(n, dtype=np.int32),
                       probs=probs, features=np.zeros((n, 0), np.float32), readable=readable)


def tiles(**counts: int) -> list[str]:
    names = {"zero": "0", "one": "1+", "two": "2+", "three": "3+", "other": "non-tumour",
             "bad": "unreadable"}
    return [names[k] for k, n in counts.items() for _ in range(n)]


# --------------------------------------------------------------------------- breast cascade


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"zero": 17, "three": 3}, "3+"),  # 15% 3+
        ({"zero": 9, "three": 1}, "0"),  # exactly 10% is not > 10%
        ({"zero": 8, "three": 2}, "3+"),
        ({"zero": 8, "two": 1, "three": 1}, "2+"),  # >= 2+ in 20%, 3+ only 10%
        ({"zero": 89, "one": 11}, "1+"),
        ({"zero": 90, "one": 10}, "0"),
        ({"zero": 70, "one": 10, "two": 10, "three": 10}, "2+"),
        ({"zero": 5}, "0"),
        ({"three": 1}, "3+"),
    ],
)
def test_breast_cascade(counts, expected):
    score = score_tiles(results_from(tiles(**counts)), n_samples=50)
    assert score.score == expected
    assert score.method == "asco-cap-breast-2023"


def test_fractions_count_tumour_tiles_only():
    score = score_tiles(results_from(tiles(zero=6, one=2, three=2, other=30, bad=5)),
                        n_samples=50)
    assert score.n_tiles == 45 and score.n_tumour_tiles == 10 and score.n_unreadable == 5
    assert score.class_fractions == pytest.approx({"0": 0.6, "1+": 0.2, "2+": 0.0, "3+": 0.2})
    assert score.score == "3+" and score.category == "positive"


@pytest.mark.parametrize(("call", "category"),
                         [("0", "negative"), ("1+", "negative"), ("2+", "equivocal"),
                          ("3+", "positive")])
def test_three_class_collapse(call, category):
    assert score_tiles(results_from([call]), n_samples=10).category == category


@pytest.mark.parametrize("outcomes", [[], tiles(other=4), tiles(bad=3), tiles(other=2, bad=2)])
def test_no_tumour_tiles_gives_no_score(outcomes):
    score = score_tiles(results_from(outcomes), n_samples=20)
    assert score.score is None and score.category is None and score.confidence is None
    assert score.her2_low is None
    assert score.n_tumour_tiles == 0 and score.n_tiles == len(outcomes)
    assert set(score.class_fractions.values()) == {0.0}
    json.dumps(score.to_dict(), allow_nan=False)


def test_all_unreadable_counts_them():
    score = score_tiles(results_from(tiles(bad=7)), n_samples=20)
    assert score.n_unreadable == 7 and score.score is None


def test_cutoff_is_a_parameter():
    res = results_from(tiles(zero=17, three=3))
    assert score_tiles(res, params=RuleParams(cutoff=0.2), n_samples=10).score == "0"
    assert score_tiles(res, params=RuleParams(cutoff=0.2), n_samples=10).cutoff == 0.2


# --------------------------------------------------------------------------- gastric


def test_gastric_resection_uses_the_same_cutoff():
    res = results_from(tiles(zero=9, three=1))
    score = score_tiles(res, organ="gastric", specimen="resection", n_samples=20)
    assert score.score == "0" and score.method == "asco-cap-gastric-resection-2016"
    res = results_from(tiles(zero=8, two=2))
    assert score_tiles(res, organ="gastric", n_samples=20).score == "2+"


@pytest.mark.parametrize(("min_tiles", "expected"), [(1, "3+"), (2, "2+"), (3, "0")])
def test_gastric_biopsy_counts_clusters_regardless_of_percentage(min_tiles, expected):
    res = results_from(tiles(zero=98, two=1, three=1))
    score = score_tiles(res, organ="gastric", specimen="biopsy", n_samples=20,
                        params=RuleParams(min_cluster_tiles=min_tiles))
    assert score.score == expected
    assert score.method == "asco-cap-gastric-biopsy-2016"


def test_unknown_organ_or_specimen():
    with pytest.raises(ValueError, match="organ"):
        get_rule("lung")
    with pytest.raises(ValueError, match="specimen"):
        get_rule("breast", "cytology")
    with pytest.raises(ValueError):
        RuleParams(min_cluster_tiles=0)


# --------------------------------------------------------------------------- confidence


def test_one_hot_tiles_are_certain():
    score = score_tiles(results_from(tiles(zero=10, three=5)), n_samples=200)
    assert score.confidence == 1.0
    lo, hi = score.class_fraction_intervals["3+"]
    assert lo == hi == pytest.approx(1 / 3)


def test_uncertain_tiles_near_the_cutoff_lower_confidence():
    n = 100
    probs = np.zeros((n, 5), np.float32)
    probs[:, 0] = 1.0
    probs[:15] = [0.2, 0.0, 0.0, 0.8, 0.0]  # 15% called 3+, each only 80% sure
    score = score_tiles(results_from(["0"] * n, probs), n_samples=4000, seed=1)
    # read together, the 15 tiles are 3+ in 80% of the resamplings and all 0 in the rest
    assert score.score == "3+" and score.confidence == pytest.approx(0.8, abs=0.03)
    assert score.class_fraction_intervals["3+"] == (0.0, pytest.approx(0.15))


def test_same_inputs_same_outputs():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(5), size=300)
    res = results_from(["0"] * 300, probs)
    a, b = (score_tiles(res, n_samples=300, seed=7).to_dict() for _ in range(2))
    assert a == b
    assert score_tiles(res, n_samples=300, seed=8).to_dict()["seed"] == 8


def test_sampling_reads_the_tiles_together():
    probs = np.tile([[0.5, 0.0, 0.0, 0.5, 0.0]], (400, 1))
    score = score_tiles(results_from(["0"] * 400, probs), n_samples=4000)
    # every tile is called 0 (arg-max tie), so 3+ is 0% as called. Read together, the tiles
    # are all 0 in about half of the resamplings and all 3+ in the other half: the 3+
    # fraction ranges over 0-100%, and the call is a coin toss between 0 and 3+
    assert score.class_fractions["3+"] == 0.0
    assert score.class_fraction_intervals["3+"] == (0.0, 1.0)
    assert score.as_called == "0" and score.score in ("0", "3+")
    assert score.score_shares["0"] == pytest.approx(0.5, abs=0.03)
    assert score.score_shares["0"] + score.score_shares["3+"] == pytest.approx(1.0)


def test_tiles_a_model_cannot_tell_apart_give_no_confident_call():
    """Near-uniform tile probabilities (a model that knows nothing, or one calibrated to say
    so) must not add up to a sure call: drawn independently, a quarter of the tiles would be
    3+ in every resampling and the call 3+ at 1.00."""
    rng = np.random.default_rng(0)
    probs = 0.25 + rng.uniform(-0.02, 0.02, (500, 4))
    probs = np.concatenate([probs / probs.sum(axis=1, keepdims=True), np.zeros((500, 1))], 1)
    score = score_tiles(results_from(["3+"] * 500, probs), n_samples=1000)
    assert score.borderline is not None and score.confidence < 0.35
    assert all(0.15 < v < 0.35 for v in score.score_shares.values())


def test_a_call_is_as_sure_as_the_tiles_that_decide_it():
    # 80 tiles surely 0, 20 tiles (20%) 90% 3+ and 10% 2+: 3+ in 90% of the resamplings
    probs = np.array([[1, 0, 0, 0, 0]] * 80 + [[0, 0, 0.1, 0.9, 0]] * 20, np.float32)
    score = score_tiles(results_from(["0"] * 80 + ["3+"] * 20, probs), n_samples=2000)
    assert score.score == "3+" and score.borderline is None
    assert score.confidence == pytest.approx(0.9, abs=0.03)
    assert score.score_shares["2+"] == pytest.approx(0.1, abs=0.03)


def test_whether_a_tile_is_tumour_is_drawn_per_tile():
    # every tile half tumour (3+), half not: the tumour count varies around half the tiles,
    # never all or none, and every tumour tile is 3+
    probs = np.tile([[0.0, 0.0, 0.0, 0.5, 0.5]], (200, 1))
    counts = rules._sample_counts(probs, 300, np.random.default_rng(1))
    assert (counts[:, :3] == 0).all() and (counts.sum(axis=1) == 200).all()
    assert 60 < counts[:, 3].min() and counts[:, 3].max() < 140


def test_her2_low_evidence_for_zero_and_one_plus():
    null = score_tiles(results_from(tiles(zero=20)), n_samples=50)
    assert null.her2_low.subcategory == "0 (null)" and null.her2_low.faint_fraction == 0.0
    assert null.her2_low.p_at_least_1plus == 0.0
    faint = score_tiles(results_from(tiles(zero=19, one=1)), n_samples=50)
    assert faint.her2_low.subcategory == "0 with faint staining (<=10%)"
    assert faint.her2_low.faint_fraction == pytest.approx(0.05)
    low = score_tiles(results_from(tiles(zero=8, one=2)), n_samples=50)
    assert low.her2_low.subcategory == "1+ (HER2-low)" and low.her2_low.p_at_least_1plus == 1.0
    assert score_tiles(results_from(tiles(three=2)), n_samples=10).her2_low is None


def test_borderline_one_plus_has_a_probability_of_her2_low():
    probs = np.zeros((50, 5), np.float32)
    probs[:, 0] = 1.0
    probs[:10] = [0.4, 0.6, 0.0, 0.0, 0.0]  # 20% called 1+, each 60% sure
    score = score_tiles(results_from(["0"] * 50, probs), n_samples=4000)
    assert score.score == "1+"
    # the 10 tiles are 1+ together in 60% of the resamplings: 20% of the tiles, over the cut
    assert score.her2_low.p_at_least_1plus == pytest.approx(0.6, abs=0.03)
    assert score.confidence == pytest.approx(score.her2_low.p_at_least_1plus)


def test_model_classes_map_onto_outcomes():
    classes = ("0", "1+", "2+", "3+", "normal", "noise")
    res = results_from(["3+", "3+", "normal", "noise", "0"], classes=classes)
    score = score_tiles(res, n_samples=20)
    assert score.n_tumour_tiles == 3 and score.score == "3+"


def test_partial_results_score_as_they_grow():
    res = results_from(tiles(zero=5))
    assert score_tiles(res, n_samples=20).score == "0"
    one_hot = np.eye(5, dtype=np.float32)[[3, 3]]
    res.extend([0, 0], [5, 6], one_hot, np.zeros((2, 0)), [True, True])
    assert score_tiles(res, n_samples=20).score == "3+"


def test_to_dict_is_json_with_the_report_fields():
    score = score_tiles(results_from(tiles(zero=8, two=2)), n_samples=50)
    assert isinstance(score, SlideScore)
    d = json.loads(json.dumps(score.to_dict(), allow_nan=False))
    for key in ("score", "category", "class_fractions", "n_tiles", "n_tumour_tiles",
                "n_unreadable", "confidence", "her2_low", "method", "class_fraction_intervals"):
        assert key in d
    assert d["score"] == "2+" and d["category"] == "equivocal"


def test_rule_scorer_is_a_slide_scorer():
    scorer = rule_scorer("gastric", "biopsy", n_samples=10)
    assert scorer(results_from(tiles(zero=99, three=1))).score == "3+"


# --------------------------------------------------------------------------- labels


def label_image(outcomes: list[str], shape: tuple[int, int] = (5, 8)) -> np.ndarray:
    img = np.zeros(shape, np.uint8)
    img.ravel()[: len(outcomes)] = [LABEL_VALUES[o] for o in outcomes]
    return img


def test_score_labels_matches_score_tiles_on_hard_labels():
    outcomes = tiles(zero=20, one=5, two=3, other=4, bad=2)
    by_labels = score_labels(label_image(outcomes), n_samples=100)
    by_tiles = score_tiles(results_from(outcomes), n_samples=100)
    assert by_labels.score == by_tiles.score == "2+"
    assert by_labels.class_fractions == pytest.approx(by_tiles.class_fractions)
    assert by_labels.n_tiles == 34 and by_labels.n_unreadable == 2
    assert by_labels.sampling == "bootstrap"


def test_hand_edit_changes_the_score():
    outcomes = tiles(zero=18, three=2)
    img = label_image(outcomes)
    assert score_labels(img, n_samples=50).score == "0"  # exactly 10%
    img.ravel()[0] = LABEL_VALUES["3+"]  # a pathologist upgrades one tile
    assert score_labels(img, n_samples=50).score == "3+"


def test_bootstrap_confidence_is_seeded_and_honest():
    img = label_image(tiles(zero=17, three=3))  # 15%: bootstrap often falls to <= 10%
    a = score_labels(img, n_samples=500, seed=4)
    assert a.to_dict() == score_labels(img, n_samples=500, seed=4).to_dict()
    assert 0.5 < a.confidence < 1.0
    assert score_labels(label_image(tiles(three=30)), n_samples=100).confidence == 1.0


def test_score_labels_edge_cases():
    assert score_labels(np.zeros((3, 3), np.uint8)).score is None
    with pytest.raises(ValueError, match="no tile class"):
        score_labels(np.array([[1, 99]]))
    gastric = score_labels(label_image(tiles(zero=99, two=1), shape=(10, 10)), organ="gastric",
                           specimen="biopsy", n_samples=20)
    assert gastric.score == "2+"


def test_call_uses_the_tile_layer_classes():
    """A 6-class model's 3+ arg-max stays 3+ even when normal + noise together outweigh it."""
    classes = ("0", "1+", "2+", "3+", "normal", "noise")
    probs = np.array([[0.0, 0.0, 0.0, 0.4, 0.3, 0.3]] * 3)
    res = results_from(["3+"] * 3, probs, classes=classes)
    by_tiles = score_tiles(res, n_samples=50)
    assert by_tiles.score == "3+" and by_tiles.n_tumour_tiles == 3
    assert score_labels(res.label_image(), n_samples=50).score == "3+"
