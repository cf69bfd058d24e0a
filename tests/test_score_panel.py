"""The score panel says a borderline call in words: both scores, "review", both shares."""

from __future__ import annotations

import numpy as np

from napari_her2._qt.score_panel import ScorePanel
from napari_her2.scoring import call_from_model, call_from_rule, score_tiles
from napari_her2.tiles.results import TileResults

CLASSES = ("0", "1+", "2+", "3+", "non-tumour")


def _results(rows) -> TileResults:
    probs = np.asarray(rows, np.float32)
    n = len(probs)
    return TileResults(classes=CLASSES, feature_names=(), grid_shape=(1, n),
                       origin0=(0.0, 0.0), tile_size0=(256.0, 256.0),
                       rows=np.zeros(n, np.int32), cols=np.arange(n, dtype=np.int32),
                       probs=probs, features=np.zeros((n, 0), np.float32),
                       readable=np.ones(n, bool))


def _borderline_rule():
    """5 of 50 tiles 2+ (10%, not over the cut), 45 tiles 48% 0 / 30% 1+ / 22% 2+: read
    together, 0 in about 48% of resamplings, 1+ in 30%, 2+ in 22%."""
    return score_tiles(_results([[0, 0, 1, 0, 0]] * 5 + [[0.48, 0.30, 0.22, 0, 0]] * 45))


def test_a_borderline_rule_call_shows_both_scores(qtbot):
    panel = ScorePanel()
    qtbot.addWidget(panel)
    call = call_from_rule(_borderline_rule())
    panel.show_call(call)
    assert panel.score_label.text() == "0 / 1+"
    assert panel.category_label.full_text() == "negative, borderline: review"
    conf = panel.confidence_label.full_text()
    assert conf.startswith(f"{100 * call.confidence:.0f}%: 0 in ")
    assert "of resamplings, 1+ in" in conf
    panel.show_call(call.as_partial())
    assert panel.score_label.text() == "0 / 1+ …"


def test_a_borderline_model_call_across_categories(qtbot):
    panel = ScorePanel()
    qtbot.addWidget(panel)
    call = call_from_model("2+", {"0": 0.05, "1+": 0.4, "2+": 0.45, "3+": 0.1}, "whspn-mlp",
                           _borderline_rule())
    panel.show_call(call)
    assert panel.score_label.text() == "1+ / 2+"
    assert panel.category_label.full_text() == "negative / equivocal: review"
    assert panel.confidence_label.full_text() == "45%: P(1+) 0.40, P(2+) 0.45"


def test_a_clear_call_shows_one_score(qtbot):
    panel = ScorePanel()
    qtbot.addWidget(panel)
    panel.show_call(call_from_rule(score_tiles(_results([[0, 0, 0, 1, 0]] * 4))))
    assert panel.score_label.text() == "3+"
    assert panel.category_label.full_text() == "positive"
    assert panel.confidence_label.full_text() == "100%"
    assert panel.bars_title.text() == "Tumour tiles by class"


def test_a_call_over_cells_says_its_bars_are_cells(qtbot):
    from dataclasses import replace

    panel = ScorePanel()
    qtbot.addWidget(panel)
    tiles = call_from_rule(score_tiles(_results([[0, 0, 0, 1, 0]] * 4)))
    panel.show_call(replace(tiles, method=tiles.method + "-cells"))
    assert panel.bars_title.text() == "Tumour cells by class"
    panel.show_call(tiles)
    assert panel.bars_title.text() == "Tumour tiles by class"
