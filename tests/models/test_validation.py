"""A learned model speaks with its validation: the card's accuracy beside every call."""

from __future__ import annotations

import json

import pytest

from napari_her2.models import read_card
from napari_her2.models.card import ModelCard
from napari_her2.models.catalog import PACKAGE_CHECKPOINTS
from napari_her2.models.validation import (
    DEMONSTRATION_FLOOR,
    MIN_EXTERNAL_IMAGES,
    Validation,
    validation_of,
)


def card_with(metrics: dict) -> ModelCard:
    return ModelCard(architecture="whspn-mlp", classes=("0", "1+", "2+", "3+"), name="m",
                     metrics=metrics)


@pytest.mark.parametrize(("metrics", "want"), [
    ({"cross_validation": {"k": 5, "accuracy": {"mean": 0.9}},
      "external": {"accuracy": 0.85, "n": 120}}, (0.9, 5, 0.85, 120)),
    ({"cross_validation": {"k": 4, "image": {"accuracy": {"mean": 0.5}}, "tile": {}},
      "external": {"image": {"accuracy": 0.25, "n": 4}}}, (0.5, 4, 0.25, 4)),
    ({"cross_validation": {"accuracy": 0.7}}, (0.7, None, None, None)),
    ({}, (None, None, None, None)),
])
def test_figures_are_read_as_training_writes_them(metrics, want):
    v = validation_of(card_with(metrics))
    assert (v.accuracy, v.folds, v.external_accuracy, v.n_external) == want


def test_demonstration_unless_external_and_above_the_floor():
    good = Validation("m", 0.9, 5, 0.85, MIN_EXTERNAL_IMAGES)
    assert not good.demonstration and "demonstration" not in good.text()
    assert Validation("m", 0.9, 5).demonstration, "no external test"
    assert Validation("m", 0.9, 5, 0.9, MIN_EXTERNAL_IMAGES - 1).demonstration, "too few"
    assert Validation("m", DEMONSTRATION_FLOOR - 0.01, 5, 0.9, 100).demonstration
    assert Validation("m", 0.9, 5, DEMONSTRATION_FLOOR - 0.01, 100).demonstration
    assert Validation("m", None, None).brief() == (
        "validated accuracy not stated, demonstration model")


@pytest.mark.parametrize("name", ["abmil-tma", "whspn-mlp-tma", "her2-resnet-tma"])
def test_the_shipped_models_are_demonstration_models(name):
    v = validation_of(read_card(PACKAGE_CHECKPOINTS / f"{name}.safetensors"))
    assert v.demonstration
    assert v.lowest is not None and v.lowest < DEMONSTRATION_FLOOR
    assert f"validated accuracy {v.lowest:.2f}, demonstration model" == v.brief()
    json.dumps(v.to_dict(), allow_nan=False)
