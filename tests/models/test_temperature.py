"""A card's calibration temperature: validated on the card, applied by the tile predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_her2.models import ModelCard, TorchTilePredictor, get_model, load_checkpoint
from napari_her2.models import save_checkpoint as save
from napari_her2.models.calibration import TEMPERATURE_RANGE, softmax_at, temperature_in

HER2 = ("0", "1+", "2+", "3+")


def card(metrics: dict | None = None, **kw) -> ModelCard:
    return ModelCard(architecture="her2-resnet", classes=HER2, input_size=32, target_mpp=1.0,
                     metrics=metrics or {}, **kw)


@pytest.mark.parametrize(("metrics", "want"), [
    ({}, None),
    ({"calibration": {"temperature": None, "note": "SVM"}}, None),
    ({"calibration": {"temperature": 2.5, "ece_before": 0.4}}, 2.5),
    ({"calibration": {"temperature": 1}}, 1.0),
])
def test_temperature_is_read_from_the_card(metrics, want):
    assert card(metrics).temperature == want
    assert temperature_in(metrics) == want


@pytest.mark.parametrize("bad", [0, -1.0, TEMPERATURE_RANGE[1] * 2, "2", True, [2.0], 10**400])
def test_a_malformed_temperature_is_an_invalid_card(bad):
    with pytest.raises(ValueError, match="temperature"):
        card({"calibration": {"temperature": bad}})
    with pytest.raises(ValueError, match="calibration"):
        card({"calibration": [1.0]})


def test_softmax_at_divides_the_logits():
    z = torch.tensor([[4.0, 1.0, -2.0, 0.5]])
    assert torch.allclose(softmax_at(z, 2.0), torch.softmax(z / 2.0, -1))
    assert torch.equal(softmax_at(z, None), torch.softmax(z, -1))


@pytest.fixture
def pair(tmp_path):
    """One tiny her2-resnet saved twice: without and with a temperature of 3 in its card."""
    torch.manual_seed(0)
    model = get_model("her2-resnet", num_classes=4)
    with torch.no_grad():  # sharp logits, so that the temperature visibly softens them
        model.head.weight.mul_(20)
    paths = {}
    for name, metrics in (("plain", {}), ("hot", {"calibration": {"temperature": 3.0}})):
        paths[name] = tmp_path / f"{name}.safetensors"
        save(paths[name], model, card(metrics, name=name))
    return paths


def test_the_predictor_applies_the_cards_temperature(pair):
    plain = TorchTilePredictor(*load_checkpoint(pair["plain"]), device="cpu")
    hot = TorchTilePredictor(*load_checkpoint(pair["hot"]), device="cpu")
    assert (plain.temperature, hot.temperature) == (None, 3.0)
    tiles = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    z, emb = hot.logits(tiles)
    z_plain, _ = plain.logits(tiles)
    np.testing.assert_array_equal(z, z_plain)  # raw logits: before any temperature
    assert emb is not None and emb.shape[0] == 6
    p_plain, p_hot = plain.predict(tiles).probs, hot.predict(tiles).probs
    expected = torch.softmax(torch.from_numpy(z) / 3.0, 1).numpy()
    np.testing.assert_allclose(p_hot, expected, atol=1e-6)
    np.testing.assert_allclose(p_plain, torch.softmax(torch.from_numpy(z), 1).numpy(),
                               atol=1e-6)
    assert np.array_equal(p_hot.argmax(1), p_plain.argmax(1))  # the call never changes
    assert p_hot.max(1).mean() < p_plain.max(1).mean()  # only how sure it says it is
    assert hot.logits(tiles[:0])[0].shape == (0, 4)
