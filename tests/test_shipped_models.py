"""The checkpoints shipped in the package: listed, honest cards, and usable on a fresh install."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_her2._qt.layers import tile_labels
from napari_her2.models import available_predictors, available_slide_models, read_card
from napari_her2.models.catalog import PACKAGE_CHECKPOINTS

SHIPPED_TILE, SHIPPED_MIL, SHIPPED_WHSPN = "her2-resnet-tma", "abmil-tma", "whspn-mlp-tma"


def test_shipped_checkpoints_are_listed():
    tiles = {i.name for i in available_predictors()}
    slides = {i.name for i in available_slide_models()}
    assert SHIPPED_TILE in tiles and {SHIPPED_MIL, SHIPPED_WHSPN} <= slides


@pytest.mark.parametrize("name", [SHIPPED_TILE, SHIPPED_MIL, SHIPPED_WHSPN])
def test_cards_state_data_metrics_and_intended_use(name):
    card = read_card(PACKAGE_CHECKPOINTS / f"{name}.safetensors")
    assert "not for diagnosis" in card.intended_use.lower()
    assert "her2-ihc-tma" in card.training_data and "ESTIMATED" in card.training_data
    assert "cross_validation" in card.metrics and "external" in card.metrics
    assert (PACKAGE_CHECKPOINTS / f"{name}.safetensors").stat().st_size < 2 * 2**20


@pytest.mark.parametrize("name", [SHIPPED_TILE, SHIPPED_MIL, SHIPPED_WHSPN])
def test_shipped_cards_carry_a_fitted_temperature(name):
    """Each shipped model is calibrated on the held-out folds of its cross-validation: the card
    holds the temperature the plugin applies and the ECE before and after it."""
    cal = read_card(PACKAGE_CHECKPOINTS / f"{name}.safetensors").metrics["calibration"]
    assert 0.01 <= cal["temperature"] <= 100
    assert cal["ece_after"] <= cal["ece_before"]
    assert "out-of-fold" in cal["fitted_on"]


def test_a_shipped_model_that_knows_little_gives_no_confident_call():
    """The shipped tile model's held-out predictions carry almost no information (the fitted
    temperature flattens its logits tens of times): with it applied, the guideline rule must
    not turn its tiles into a sure call (read independently they would give 3+ at 1.00)."""
    from napari_her2 import score_slide
    from napari_her2._sample_data import sample_slide_path

    card = read_card(PACKAGE_CHECKPOINTS / f"{SHIPPED_TILE}.safetensors")
    assert card.metrics["calibration"]["temperature"] > 10
    report = score_slide(sample_slide_path(), SHIPPED_TILE)
    probs = report.results.probs[report.results.readable]
    assert probs.max() < 0.4  # near-uniform tiles: the temperature was applied
    assert report.call.confidence < 0.5 and report.call.borderline is not None


def test_fresh_install_shows_cnn_tiles_and_the_attention_heatmap(qtbot, make_napari_viewer):
    from napari_her2._qt.widget import Her2ScoringWidget
    from napari_her2._sample_data import sample_slide_path

    viewer = make_napari_viewer()
    viewer.open(str(sample_slide_path()), plugin="napari-her2")
    image = viewer.layers[0].name
    widget = Her2ScoringWidget(viewer)
    qtbot.addWidget(widget)
    tile = next(c for c in widget.form.model_combo.choices if SHIPPED_TILE in str(c))
    mil = next(c for c in widget.form.slide_model_combo.choices if c and SHIPPED_MIL in str(c))
    widget.form.model_combo.value = tile
    widget.form.slide_model_combo.value = mil
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=180_000)
    assert widget.report is not None, widget.status.text()
    assert widget.report.predictor.name == SHIPPED_TILE
    tiles = tile_labels(viewer.layers[f"{image} HER2 tiles"])  # one label per tile
    assert np.count_nonzero(tiles) == len(widget.report.results) > 0
    attention = viewer.layers[f"{image} attention"].data
    assert np.isfinite(attention).any()
    assert widget.report.call.method == "abmil-monte-carlo"
