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
