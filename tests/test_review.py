"""The review queue ranking and the corrections log (no Qt)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from napari_her2.classes import LABEL_VALUES
from napari_her2.scoring import call_slide
from napari_her2.scoring.review import (
    ReviewLog,
    ReviewParams,
    apply_corrections,
    decisive_boundaries,
    rank_tiles,
)
from napari_her2.tiles.results import TileResults

CLASSES = ("0", "1+", "2+", "3+")


def _results(probs, readable=None) -> TileResults:
    probs = np.asarray(probs, np.float32)
    n = len(probs)
    res = TileResults(CLASSES, (), (1, n), (0.0, 0.0), (256.0, 256.0))
    res.extend(np.zeros(n), np.arange(n), probs, np.zeros((n, 0)),
               np.ones(n, bool) if readable is None else readable)
    return res


def test_decisive_boundaries_follow_the_call():
    assert decisive_boundaries("0") == (1,)
    assert decisive_boundaries("1+") == (1, 2)
    assert decisive_boundaries("2+") == (2, 3)
    assert decisive_boundaries("3+") == (3,)
    assert decisive_boundaries(None) == (1, 3)


def test_the_boundary_tile_of_a_zero_call_comes_first():
    confident = [[0.97, 0.01, 0.01, 0.01]] * 30
    boundary = [[0.5, 0.5, 0.0, 0.0]]  # split across 0/1+: decides HER2-low
    off_boundary = [[0.0, 0.0, 0.5, 0.5]]  # split across 2+/3+, irrelevant for a 0 slide
    res = _results(confident + off_boundary + boundary)
    call = call_slide(res)
    assert call.score == "0"
    queue = rank_tiles(res, call)
    assert queue.index[0] == 31
    assert "0/1+" in queue.reason_text(0)
    assert queue.boundaries == ("0/1+",)
    assert list(queue.index).index(30) > 0  # the 2+/3+ tile is listed only as uncertain
    assert queue.reason[list(queue.index).index(30)] == 3


def test_a_three_plus_call_ranks_the_two_three_boundary_first():
    res = _results([[0.0, 0.0, 0.05, 0.95]] * 5 + [[0.5, 0.5, 0, 0]] + [[0, 0, 0.5, 0.5]])
    call = call_slide(res)
    assert call.score == "3+"
    queue = rank_tiles(res, call)
    assert queue.index[0] == 6
    assert queue.reason_text(0).startswith("near 2+/3+")


def test_a_clear_cut_call_lists_the_tiles_that_carry_it_and_never_unreadable_ones():
    probs = [[1.0, 0, 0, 0]] * 4 + [[np.nan] * 4]
    res = _results(probs, readable=np.array([1, 1, 1, 1, 0], bool))
    queue = rank_tiles(res, call_slide(res))
    assert queue.index.tolist() == [0, 1, 2, 3]
    assert queue.reason_text(0) == "carries the call (P 1.00)"
    assert queue.n_carrying == 4
    assert rank_tiles(res).index.size == 0  # without a call nothing carries it


def test_tiles_that_carry_the_call_come_after_the_others():
    probs = [[0.0, 0, 0, 1.0]] * 8 + [[0, 0, 0.5, 0.5], [0, 0.05, 0.9, 0.05], [0, 0, 0.1, 0.9]]
    res = _results(probs)
    call = call_slide(res)
    assert call.score == "3+"
    queue = rank_tiles(res, call)
    carries = [i for i in range(len(queue)) if queue.reason_text(i).startswith("carries")]
    assert carries == list(range(len(queue) - 8, len(queue)))  # the eight sure 3+ tiles last
    assert set(queue.index[:len(queue) - 8].tolist()) == {8, 9, 10}
    # a mostly-3+ tile with a tenth across the 2+/3+ boundary is listed for that boundary
    assert queue.reason_text(int(np.flatnonzero(queue.index == 10)[0])).startswith("near 2+/3+")


def test_attention_lists_the_tile_the_slide_model_looked_at():
    res = _results([[0.99, 0.01, 0, 0]] * 10)
    call = call_slide(res)
    att = np.full(10, 0.01)
    att[7] = 0.9
    call = replace(call, evidence=replace(call.evidence, attention=att))
    queue = rank_tiles(res, call)
    assert queue.index[0] == 7 and queue.reason_text(0).startswith("high attention")


def test_queue_is_bounded_and_ordered():
    rng = np.random.default_rng(0)
    res = _results(rng.dirichlet(np.ones(4), size=2000))
    queue = rank_tiles(res, call_slide(res), ReviewParams(max_items=50))
    assert len(queue) == 50
    assert np.all(np.diff(queue.priority) <= 0)
    assert "p=" in queue.row_text(0)


def test_hundred_thousand_tiles_rank_well_under_a_second():
    rng = np.random.default_rng(1)
    res = _results(rng.dirichlet(np.ones(4), size=100_000))
    call = call_slide(res, n_samples=50)
    t0 = time.perf_counter()
    queue = rank_tiles(res, call)
    elapsed = time.perf_counter() - t0
    assert len(queue) == 500
    assert elapsed < 0.5, elapsed


def test_review_log_keeps_the_first_original():
    log = ReviewLog(reviewer="dr a")
    log.record(1, 2, "1+", "2+")
    entry = log.record(1, 2, LABEL_VALUES["2+"], LABEL_VALUES["3+"])
    assert entry.original == "1+" and entry.new == "3+" and entry.reviewer == "dr a"
    log.record(0, 0, "0", "0")  # confirmed as it was
    assert log.n_reviewed == 2 and log.n_changed == 1
    labels = apply_corrections(np.ones((2, 3), np.uint8), log)
    assert labels[1, 2] == LABEL_VALUES["3+"] and labels[0, 0] == LABEL_VALUES["0"]
    with pytest.raises(ValueError, match="no tile class"):
        log.record(0, 1, "0", 42)


def test_a_borderline_queue_starts_with_the_tiles_that_flip_it():
    # 4 tiles 90% 2+ / 10% 3+, one split 2+/3+ (tile 4), one 44% 2+ (tile 5: flips 1+ <-> 2+),
    # one split 0/1+ (tile 6), one 90% 1+ (tile 7), 42 tiles 2% 1+. Read together: 0 in 10%
    # of the resamplings, 1+ in 46%, 2+ in 34% (tile 5 2+), 3+ in 10%: borderline 1+ / 2+
    five = ([[0, 0, 0.9, 0.1]] * 4 + [[0, 0, 0.5, 0.5]] + [[0.56, 0, 0.34, 0.1]]
            + [[0.5, 0.5, 0, 0]] + [[0.1, 0.9, 0, 0]])
    res = _results(five + [[0.98, 0.02, 0, 0]] * 42)
    call = call_slide(res)
    assert call.borderline == ("1+", "2+")
    queue = rank_tiles(res, call)
    assert queue.index[0] == 5 and queue.n_deciding == 1
    assert queue.reason_text(0).startswith("decides borderline 1+ / 2+: near 1+/2+ boundary")
    assert queue.priority[1] > queue.priority[0]  # a split 0/1+ or 2+/3+ tile weighs more,
    assert queue.boundaries[0] == "1+/2+"  # but does not decide between 1+ and 2+
    plain = rank_tiles(res, replace(call, borderline=None))
    assert plain.index[0] != 5 and plain.n_deciding == 0


def test_a_zero_one_borderline_queue_starts_near_zero_one():
    # 4 tiles 2+ and one split 2+/3+ (10% >= 2+, not over the cut), one 48% 0 / 30% 1+ /
    # 22% 2+ (tile 5), 44 tiles 1.5% 1+: read together, 0 in 48% of the resamplings, 1+ in
    # 30% (tile 5 1+), 2+ in 22% (tile 5 2+)
    res = _results([[0, 0, 1, 0]] * 4 + [[0, 0, 0.5, 0.5]] + [[0.48, 0.30, 0.22, 0]]
                   + [[0.985, 0.015, 0, 0]] * 44)
    call = call_slide(res)
    assert call.borderline == ("0", "1+")
    queue = rank_tiles(res, call)
    assert queue.index[0] == 5 and queue.reason_text(0).startswith("decides borderline 0 / 1+")
    assert queue.n_deciding == 1
    assert queue.index[1] == 4  # the uncertain 2+/3+ tile comes after it
