"""Tile training end to end on a tiny dataset: it learns, it exports, the plugin loads it."""

from __future__ import annotations

import dataclasses
import json

import napari_her2
import numpy as np
import pytest
import torch
from napari_her2.models import TorchTilePredictor, load_checkpoint

from her2_train.commands import DataArgs, train_tiles
from her2_train.config import TileTrainConfig, preset
from her2_train.data import TileSpec, load_dataset
from her2_train.labels import discover
from her2_train.tile_training import train_model

SPEC = TileSpec(tile_size=32, target_mpp=1.0, max_tiles=36)


def config(**kw) -> TileTrainConfig:
    base = dict(tiles=SPEC, recipe=preset("default", batch_size=32, patience=3), epochs=3,
                device="cpu")
    return TileTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def tiles_run(tiny_data, tiny_external, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    metrics = train_tiles(DataArgs(tiny_data, external=tiny_external, max_tiles=36),
                          config(folds=2, epochs=4), out, progress=False)
    return out, metrics


@pytest.fixture(scope="module")
def images(tiny_data, tmp_path_factory):
    return load_dataset(discover(tiny_data), SPEC, tmp_path_factory.mktemp("cache"))


def test_run_folder_contents(tiles_run):
    out, metrics = tiles_run
    for name in ("config.json", "manifest.json", "metrics.json", "her2-resnet.safetensors",
                 "plots/training_curve.png", "plots/confusion_external_image.png"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["train"]) == 8 and len(manifest["external"]) == 4
    assert all(len(f["sha256"]) == 64 for f in manifest["train"])
    assert any((out / "cache").glob("*.npz"))


def test_loss_goes_down(tiles_run):
    history = tiles_run[1]["history"]
    assert history[-1]["loss"] < history[0]["loss"]


def test_no_image_in_two_splits(tiles_run):
    folds = tiles_run[1]["cross_validation"]["folds"]
    assert len(folds) == 2
    for fold in folds:
        assert not set(fold["train_images"]) & set(fold["test_images"])
    tested = sorted(n for f in folds for n in f["test_images"])
    assert len(tested) == 8 and len(set(tested)) == 8


def test_card_and_plugin_scoring(tiles_run, tiny_external):
    out, metrics = tiles_run
    ckpt = out / "her2-resnet.safetensors"
    model, card = load_checkpoint(ckpt)
    assert card.input_size == 32 and card.target_mpp == 1.0
    assert "weak tile labels" in card.training_data
    assert "not for diagnosis" in card.intended_use
    cv = card.metrics["cross_validation"]
    assert cv["k"] == 2 and {"mean", "lo", "hi"} <= set(cv["image"]["accuracy"])
    assert card.metrics["external"]["image"]["n"] == 4
    slide = sorted(tiny_external.glob("*.tif"))[0]  # the light 0 image: no stain no-call
    report = napari_her2.score_slide(slide, ckpt, device="cpu")
    assert report.to_dict()["score"] in ("0", "1+", "2+", "3+")
    assert report.to_dict()["n_scored_tiles"] > 0


def test_card_carries_the_temperature_fitted_on_the_held_out_folds(tiles_run, tiny_external):
    out, metrics = tiles_run
    cal = metrics["cross_validation"]["calibration"]
    tested = sum(f["tile"]["n"] for f in metrics["cross_validation"]["folds"])
    assert cal["n"] == tested > 0  # every out-of-fold tile, each once
    assert cal["bins"] == 10 and cal["fitted_on"].startswith("out-of-fold predictions")
    assert cal["temperature"] > 0 and 0 <= cal["ece_after"] <= 1 and 0 <= cal["ece_before"] <= 1
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9
    assert cal["external"]["n"] == metrics["external"]["tile"]["n"]
    _, card = load_checkpoint(out / "her2-resnet.safetensors")
    assert card.metrics["calibration"] == cal and card.temperature == cal["temperature"]
    # the plugin divides the logits by it
    predictor = TorchTilePredictor(*load_checkpoint(out / "her2-resnet.safetensors"), device="cpu")
    tiles = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    z = torch.from_numpy(predictor.logits(tiles)[0])
    expected = torch.softmax(z / cal["temperature"], 1).numpy()
    np.testing.assert_allclose(predictor.predict(tiles).probs, expected, atol=1e-6)


def test_external_figures_are_measured(tiles_run):
    ext = tiles_run[1]["external"]["image"]
    assert ext["n"] == 4 and 0.0 <= ext["accuracy"] <= 1.0
    assert ext["agreement"] is None or ext["agreement"]["n"] == 4


def test_same_seed_same_weights(images):
    a = train_model(images, config(epochs=2), None, "a", progress=False).model.state_dict()
    b = train_model(images, config(epochs=2), None, "b", progress=False).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train_model(images, config(epochs=2, seed=1), None, "c", progress=False)
    assert not all(torch.equal(a[k], c.model.state_dict()[k]) for k in a)


def test_resume_equals_uninterrupted(images, tmp_path):
    cfg = config(epochs=3)
    whole = train_model(images, cfg, tmp_path / "whole" / "last.pt", "w", progress=False)
    state = tmp_path / "cut" / "last.pt"
    first = train_model(images, cfg, state, "1", progress=False, stop_after=1)
    assert len(first.fit.history) == 1
    resumed = train_model(images, cfg, state, "2", progress=False)
    assert [h["epoch"] for h in resumed.fit.history] == [1, 2, 3]
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole.fit.history == resumed.fit.history


def test_seed000_preset_without_early_stopping(images):
    recipe = dataclasses.replace(preset("seed000"), batch_size=16)
    assert (recipe.optimizer, recipe.lr, recipe.tile_size) == ("adam", 1e-4, 64)
    trained = train_model(images, config(recipe=recipe, epochs=1), None, "s", progress=False)
    assert len(trained.fit.history) == 1 and "val_macro_f1" not in trained.fit.history[0]
    assert np.isfinite(trained.fit.history[0]["loss"])


@pytest.mark.parametrize("arch,args", [
    ("repvgg-gct", {"widths": [8, 8, 16, 16, 32], "depths": [1, 1, 1, 1, 1]}),
    ("repvgg-se", {"widths": [8, 8, 16, 16, 32], "depths": [1, 1, 1, 1, 1]}),
    ("resnet18", {"widths": [8, 8, 16, 16], "input_size": 32}),
])
def test_other_tile_families_export_deploy_form(arch, args, images, tmp_path):
    from her2_train.tile_training import export

    trained = train_model(images, config(arch=arch, arch_args=args, epochs=1), None, arch,
                          progress=False)
    card = export(trained, tmp_path / f"{arch}.safetensors")
    model, loaded = load_checkpoint(tmp_path / f"{arch}.safetensors")
    assert loaded.sha256 == card.sha256 and loaded.input_size == 32
    if arch.startswith("repvgg"):
        assert loaded.arch_args["deploy"] is True
        assert not any("pointwise" in k or ".bn." in k for k in model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), trained.model.eval()(x), atol=1e-4)


def test_state_of_another_config_is_refused(images, tmp_path):
    from her2_train.errors import TrainError

    state = tmp_path / "last.pt"
    train_model(images, config(epochs=2), state, "a", progress=False, stop_after=1)
    with pytest.raises(TrainError, match="another configuration or data set"):
        train_model(images, config(epochs=2, seed=5), state, "b", progress=False)
