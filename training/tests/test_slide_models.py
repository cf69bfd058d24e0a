"""MIL and WHSPN end to end over a tiny tile model; the plugin scores slides with them."""

from __future__ import annotations

import napari_her2
import numpy as np
import pytest
import torch
from napari_her2.models import load_checkpoint

from her2_train.commands import DataArgs, train_mil, train_tiles, train_whspn
from her2_train.config import TileTrainConfig, preset
from her2_train.data import TileSpec
from her2_train.errors import TrainError
from her2_train.image_level import ImageFeatures, TileModel, load_features
from her2_train.labels import discover
from her2_train.mil import MILConfig, mc_predict
from her2_train.mil import train_mil as fit_mil
from her2_train.whspn import WHSPNConfig, fractions

MIL = MILConfig(bag_size=16, bags_per_image=4, epochs=12, lr=1e-3, n_bags_eval=8)


@pytest.fixture(scope="module")
def tile_ckpt(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tile")
    cfg = TileTrainConfig(tiles=TileSpec(32, 1.0), recipe=preset("default", batch_size=32),
                          epochs=3, device="cpu")
    train_tiles(DataArgs(tiny_data, max_tiles=36), cfg, out, progress=False)
    return out / "her2-resnet.safetensors"


@pytest.fixture(scope="module")
def feats(tile_ckpt, tiny_data, tmp_path_factory):
    return load_features(discover(tiny_data), TileModel.load(tile_ckpt),
                         tmp_path_factory.mktemp("c"), max_tiles=36, slide_mpp=None)


def test_features_match_tile_model(feats, tile_ckpt):
    model, card = load_checkpoint(tile_ckpt)
    assert len(feats) == 8
    assert all(f.embeddings.shape == (len(f.probs), model.num_features) for f in feats)
    assert all(np.allclose(f.probs.sum(1), 1, atol=1e-5) for f in feats)


def test_mil_learns_and_resumes(feats, tmp_path):
    whole = fit_mil(feats, MIL, tmp_path / "w" / "last.pt", progress=False)
    losses = [h["loss"] for h in whole.history]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    state = tmp_path / "c" / "last.pt"
    fit_mil(feats, MIL, state, progress=False, stop_after=5)
    with pytest.raises(TrainError, match="other MIL settings"):  # not resumed under new ones
        fit_mil(feats, MILConfig(**{**MIL.to_dict(), "lr": 5e-4}), state, progress=False)
    with pytest.raises(TrainError, match="other MIL settings"):  # nor on other features
        fit_mil(feats[:-1], MIL, state, progress=False)
    resumed = fit_mil(feats, MIL, state, progress=False)
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mc_predict_is_seeded_probability(feats):
    model = fit_mil(feats, MILConfig(epochs=1, bag_size=8), progress=False)
    p = mc_predict(model, feats[0], n_bags=5, bag_size=8, seed=3)
    assert p.shape == (4,) and p.sum() == pytest.approx(1.0)
    assert np.array_equal(p, mc_predict(model, feats[0], n_bags=5, bag_size=8, seed=3))


def test_mil_command_and_plugin_heatmap(tile_ckpt, tiny_data, tiny_external, tmp_path):
    data = DataArgs(tiny_data, external=tiny_external, max_tiles=36)
    metrics = train_mil(data, tile_ckpt, MILConfig(**{**MIL.to_dict(), "folds": 2}),
                        tmp_path, progress=False)
    ckpt = tmp_path / "abmil.safetensors"
    _, card = load_checkpoint(ckpt)
    assert card.architecture == "abmil" and card.arch_args["in_features"] == 512
    assert card.metrics["cross_validation"]["k"] == 2
    assert metrics["external"]["n"] == 4
    cal = card.metrics["calibration"]
    assert cal == metrics["cross_validation"]["calibration"]
    assert cal["n"] == 8 and cal["bins"] == 10 and card.temperature == cal["temperature"] > 0
    assert cal["external"]["n"] == 4
    assert (tmp_path / "plots" / "training_curve.png").is_file()
    slide = sorted(tiny_external.glob("*.tif"))[0]
    report = napari_her2.score_slide(slide, tile_ckpt, slide_model=str(ckpt), device="cpu")
    assert report.to_dict()["slide_model"]["method"] == "abmil-monte-carlo"
    attention = np.asarray(report.call.evidence.attention, float)
    assert attention.shape == (len(report.results),) and np.isfinite(attention).any()


def test_fractions_count_argmax_over_her2_classes():
    probs = np.array([[0.9, 0.1, 0, 0, 0], [0, 0.2, 0.8, 0, 0], [0, 0, 0.7, 0.3, 0],
                      [0, 0, 0, 0, 1.0]])
    f = fractions(probs, ("0", "1+", "2+", "3+", "normal"))
    assert f.tolist() == pytest.approx([1 / 3, 0, 2 / 3, 0])  # the "normal" tile is left out


@pytest.mark.parametrize("kind", ["mlp", "svm"])
def test_whspn_command_and_plugin(kind, tile_ckpt, tiny_data, tiny_external, tmp_path):
    data = DataArgs(tiny_data, external=tiny_external, max_tiles=36)
    metrics = train_whspn(data, tile_ckpt, WHSPNConfig(kind=kind, folds=2, epochs=200),
                          tmp_path)
    ckpt = tmp_path / f"whspn-{kind}.safetensors"
    _, card = load_checkpoint(ckpt)
    assert card.architecture == f"whspn-{kind}"
    cal = card.metrics["calibration"]
    if kind == "mlp":
        assert cal["n"] == 8 and card.temperature == cal["temperature"] > 0
        assert {"ece_before", "ece_after", "external"} <= set(cal)
    else:  # one-hot decisions: nothing to calibrate, and the card says so
        assert card.temperature is None and "cannot calibrate" in cal["note"]
    if kind == "mlp":
        losses = [h["loss"] for h in metrics["history"]]
        assert losses[-1] < losses[0]
    slide = sorted(tiny_external.glob("*.tif"))[0]
    report = napari_her2.score_slide(slide, tile_ckpt, slide_model=str(ckpt), device="cpu")
    assert report.to_dict()["slide_model"]["method"] == f"whspn-{kind}"
    assert report.to_dict()["score"] in ("0", "1+", "2+", "3+")


def test_image_features_type(feats):
    assert isinstance(feats[0], ImageFeatures)
