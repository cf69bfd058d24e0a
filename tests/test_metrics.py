"""Agreement metrics against hand-computed values, no-calls, degenerate inputs, CIs, the plot."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_her2.cohort.metrics import (
    CI_FIGURES,
    LabelError,
    agreement,
    collapse3,
    figures_from_counts,
    normalise_score,
    plot_confusion,
)
from napari_her2.errors import Her2Error, OutputError

# Five images, classes as indices 0..3 (0, 1+, 2+, 3+):
#   labels [0, 1, 2, 3, 3], calls [0, 2, 2, 3, 1]
# Observed counts O (rows label, columns call): O[0,0]=O[1,2]=O[2,2]=O[3,3]=O[3,1]=1.
# Row totals r = [1, 1, 1, 2], column totals c = [1, 1, 2, 1], N = 5.
# QWK = 1 - sum(w*O) / sum(w*E), w_ij = (i-j)^2 / (K-1)^2 = (i-j)^2 / 9, E_ij = r_i c_j / N.
#   sum(w*O) = (0 + 1 + 0 + 0 + 4) / 9 = 5/9
#   sum_ij r_i c_j (i-j)^2: i=0: 0+1+8+9 = 18; i=1: 1+0+2+4 = 7; i=2: 4+1+0+1 = 6;
#                            i=3: 2 * (9+4+2+0) = 30; total 61  ->  sum(w*E) = 61 / 45
#   QWK = 1 - (5/9) / (61/45) = 1 - 25/61 = 36/61
# Cohen's kappa: p_o = 3/5, p_e = sum r_i c_i / N^2 = (1+1+2+2)/25 = 6/25,
#   kappa = (3/5 - 6/25) / (1 - 6/25) = 9/19
LABELS5 = ["0", "1+", "2+", "3+", "3"]
CALLS5 = ["0", "2+", "2", "3+", "1+"]


def test_hand_computed_five_image_case():
    r = agreement(LABELS5, CALLS5)
    assert r["n"] == 5 and r["n_called"] == 5
    assert r["no_call_rate"] == 0.0
    assert r["exact_agreement"] == pytest.approx(3 / 5)
    assert r["accuracy"] == pytest.approx(3 / 5)
    assert r["quadratic_weighted_kappa"] == pytest.approx(36 / 61)
    assert r["cohen_kappa"] == pytest.approx(9 / 19)
    # 3-class: labels neg neg eq pos pos, calls neg eq eq pos neg -> 3 of 5 agree
    assert r["exact_agreement_3"] == pytest.approx(3 / 5)
    assert r["confusion_3"]["matrix"] == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0]]
    assert r["confusion_4"]["matrix"] == [[1, 0, 0, 0, 0], [0, 0, 1, 0, 0],
                                          [0, 0, 1, 0, 0], [0, 1, 0, 1, 0]]
    assert r["confusion_4"]["columns"][-1] == "no call"


def test_hand_computed_per_class_figures():
    pc = agreement(LABELS5, CALLS5)["per_class"]
    # 1+: tp 0, fp 1 (a 3+ called 1+), fn 1 (a 1+ called 2+); 4 negatives, 1 false positive
    assert pc["1+"] == {"precision": 0.0, "recall": 0.0, "specificity": 0.75, "f1": 0.0,
                        "support": 1, "auc": None}
    # 2+: tp 1, fp 1, fn 0 -> precision 1/2, recall 1, F1 2/3, specificity 3/4
    assert pc["2+"]["precision"] == pytest.approx(0.5)
    assert pc["2+"]["recall"] == pytest.approx(1.0)
    assert pc["2+"]["f1"] == pytest.approx(2 / 3)
    assert pc["2+"]["specificity"] == pytest.approx(0.75)
    # 3+: tp 1, fp 0, fn 1 -> precision 1, recall 1/2, F1 2/3, specificity 3/3
    assert (pc["3+"]["precision"], pc["3+"]["recall"]) == (1.0, 0.5)
    assert pc["3+"]["specificity"] == 1.0 and pc["3+"]["support"] == 2
    # macro F1 over the four classes: (1 + 0 + 2/3 + 2/3) / 4 = 7/12
    assert agreement(LABELS5, CALLS5)["macro_f1"] == pytest.approx(7 / 12)


def test_no_call_counts_against_accuracy_and_recall_only():
    r = agreement([*LABELS5, "1+"], [*CALLS5, None])
    assert (r["n"], r["n_called"]) == (6, 5)
    assert r["no_call_rate"] == pytest.approx(1 / 6)
    assert r["exact_agreement"] == pytest.approx(3 / 5)  # over the called images
    assert r["accuracy"] == pytest.approx(3 / 6)  # the no-call is wrong
    assert r["quadratic_weighted_kappa"] == pytest.approx(36 / 61)
    assert r["per_class"]["1+"]["support"] == 2
    assert r["per_class"]["1+"]["recall"] == 0.0
    assert r["per_class"]["2+"]["precision"] == pytest.approx(0.5)  # unchanged
    assert r["confusion_4"]["matrix"][1] == [0, 0, 1, 0, 1]
    assert r["confusion_3"]["matrix"][0] == [1, 1, 0, 1]


@pytest.mark.parametrize("value, expected", [
    ("0", "0"), ("1", "1+"), ("1+", "1+"), ("2", "2+"), (" 2+ ", "2+"), ("3", "3+"),
    ("3+", "3+"), ("HER2 3+", "3+"), (0, "0"), (2, "2+"), (np.int64(3), "3+"), (1.0, "1+"),
    (None, None), (float("nan"), None), ("", None), ("no call", None),
])
def test_normalise_score(value, expected):
    assert normalise_score(value) == expected


@pytest.mark.parametrize("value", ["4", "1-", "positive", "+", 1.5, True, -1, [1]])
def test_bad_scores_raise_a_label_error(value):
    with pytest.raises(LabelError, match="not a HER2 score"):
        normalise_score(value)


def test_collapse3():
    assert [collapse3(s) for s in ("0", "1", "1+", "2", "3+")] == [
        "negative", "negative", "negative", "equivocal", "positive"]
    with pytest.raises(Her2Error):
        collapse3(None)


def test_missing_label_or_length_mismatch():
    with pytest.raises(LabelError, match="label 1 is missing"):
        agreement(["0", None], ["0", "0"])
    with pytest.raises(ValueError, match="2 labels but 1 predictions"):
        agreement(["0", "1"], ["0"])


def test_no_images_gives_none_everywhere():
    r = agreement([], [])
    assert r["n"] == 0 and r["n_called"] == 0
    for key in ("no_call_rate", "exact_agreement", "accuracy", "cohen_kappa",
                "quadratic_weighted_kappa", "macro_f1", "macro_auc"):
        assert r[key] is None, key
    assert all(r["ci"][name] is None for name in CI_FIGURES)
    assert r["confusion_4"]["matrix"] == [[0] * 5] * 4
    json.dumps(r, allow_nan=False)


def test_one_class_only_leaves_kappa_undefined():
    r = agreement(["2+"] * 4, ["2"] * 4)
    assert r["exact_agreement"] == 1.0
    assert r["cohen_kappa"] is None and r["quadratic_weighted_kappa"] is None
    assert r["per_class"]["2+"]["specificity"] is None  # no image of another class
    assert r["per_class"]["0"]["precision"] is None and r["per_class"]["0"]["recall"] is None
    json.dumps(r, allow_nan=False)


def test_all_no_calls():
    r = agreement(["0", "3+"], [None, None])
    assert r["no_call_rate"] == 1.0 and r["accuracy"] == 0.0
    assert r["exact_agreement"] is None and r["quadratic_weighted_kappa"] is None
    assert r["ci"]["exact_agreement"] is None and r["ci"]["no_call_rate"] == [1.0, 1.0]


def _noisy_calls(n: int, seed: int) -> tuple[list[str], list[str | None]]:
    rng = np.random.default_rng(seed)
    classes = ["0", "1+", "2+", "3+"]
    labels = rng.integers(0, 4, n)
    calls = np.clip(labels + rng.choice([-1, 0, 0, 0, 1], n), 0, 3)
    no_call = rng.random(n) < 0.15
    return ([classes[i] for i in labels],
            [None if nc else classes[i] for i, nc in zip(calls, no_call)])


def test_intervals_contain_the_point_estimate_and_are_reproducible():
    labels, calls = _noisy_calls(60, seed=1)
    r = agreement(labels, calls, n_boot=1000, seed=3)
    for name in CI_FIGURES:
        low, high = r["ci"][name]
        assert low <= r[name] <= high, name
        assert high - low > 0.01, name  # 60 noisy images cannot pin a figure down
    assert agreement(labels, calls, n_boot=1000, seed=3)["ci"] == r["ci"]
    assert agreement(labels, calls, n_boot=1000, seed=4)["ci"] != r["ci"]
    assert r["ci"]["level"] == 0.95 and r["ci"]["n_boot"] == 1000


def test_wider_level_gives_wider_interval_and_no_bootstrap_gives_none():
    labels, calls = _noisy_calls(40, seed=2)
    narrow = agreement(labels, calls, ci=0.5)["ci"]["exact_agreement"]
    wide = agreement(labels, calls, ci=0.99)["ci"]["exact_agreement"]
    assert wide[0] <= narrow[0] and wide[1] >= narrow[1] and wide != narrow
    assert agreement(labels, calls, n_boot=0)["ci"]["quadratic_weighted_kappa"] is None
    with pytest.raises(ValueError, match="ci must be"):
        agreement(labels, calls, ci=95)


_score_or_none = st.sampled_from(["0", "1+", "2+", "3+", None])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["0", "1+", "2+", "3+"]), _score_or_none),
                max_size=25))
def test_bootstrap_figures_match_scikit_learn_point_estimates(pairs):
    """The count-based figures (used for the bootstrap) equal the scikit-learn ones."""
    labels = [a for a, _ in pairs]
    calls = [b for _, b in pairs]
    r = agreement(labels, calls, n_boot=0)
    counts = np.asarray(r["confusion_4"]["matrix"])
    for name, value in figures_from_counts(counts).items():
        expected = r[name]
        if expected is None:
            assert math.isnan(float(value)), name
        else:
            assert float(value) == pytest.approx(expected, abs=1e-9), name


def test_macro_auc_from_probabilities():
    labels = ["0", "1+", "2+", "3+", "0", "3+"]
    eye = np.eye(4)
    perfect = np.array([eye[i] for i in (0, 1, 2, 3, 0, 3)]) * 0.7 + 0.075
    r = agreement(labels, ["0"] * 6, probs=perfect)
    assert r["macro_auc"] == pytest.approx(1.0)
    assert r["per_class"]["2+"]["auc"] == pytest.approx(1.0)
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    noisy = rng.dirichlet(np.ones(4), size=6)
    expected = roc_auc_score([0, 1, 2, 3, 0, 3], noisy, multi_class="ovr", average="macro")
    assert agreement(labels, ["0"] * 6, probs=noisy)["macro_auc"] == pytest.approx(expected)


def test_auc_only_where_computable():
    r = agreement(["0", "0", "3+"], ["0", None, "3+"],
                  probs=[[0.9, 0, 0, 0.1], [np.nan] * 4, [0.2, 0, 0, 0.8]])
    assert r["per_class"]["1+"]["auc"] is None  # no 1+ image
    assert r["per_class"]["0"]["auc"] == 1.0
    assert r["macro_auc"] == 1.0
    assert agreement(["0"], ["0"], probs=[[1, 0, 0, 0]])["macro_auc"] is None
    with pytest.raises(ValueError, match="probs must have shape"):
        agreement(["0", "1"], ["0", "1"], probs=[[1, 0, 0, 0]])


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_confusion_writes_a_png(tmp_path):
    labels, calls = _noisy_calls(30, seed=5)
    path = plot_confusion(agreement(labels, calls), tmp_path / "confusion.png")
    data = path.read_bytes()
    width, height = _png_size(data)
    assert width > 2 * height // 1.5 and 600 <= width <= 3000 and 300 <= height <= 2000
    assert 10_000 < len(data) < 2_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["confusion.png"]  # no temp file left


def test_plot_confusion_of_nothing_and_into_a_missing_folder(tmp_path):
    empty = agreement([], [])
    assert _png_size(plot_confusion(empty, tmp_path / "e.png").read_bytes())[0] > 0
    with pytest.raises(OutputError, match="missing"):
        plot_confusion(empty, tmp_path / "missing" / "e.png")
