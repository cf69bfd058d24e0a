"""TorchTilePredictor on tiny checkpoints, load_predictor, available_predictors, describe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_her2.errors import CheckpointError, ModelNotFoundError
from napari_her2.models import (
    ModelCard,
    TorchTilePredictor,
    available_predictors,
    describe_models,
    get_model,
    load_predictor,
    models_dir,
    save_checkpoint,
)
from napari_her2.predict import TilePredictor

SIX = ("0", "1+", "2+", "3+", "normal", "noise")


@pytest.fixture
def tiny_ckpt(models_folder, tiny_repvgg, randomize):
    torch.manual_seed(0)
    model = randomize(get_model("repvgg-gct", num_classes=6, **tiny_repvgg))
    card = ModelCard(
        architecture="repvgg-gct",
        classes=SIX,
        input_size=32,
        target_mpp=0.5,
        mean=(0.8, 0.7, 0.75),
        std=(0.2, 0.2, 0.2),
        name="tiny gct",
    )
    path = models_folder / "tiny-gct.safetensors"
    save_checkpoint(path, model, card)
    return path, model


def _tiles(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_predictor_from_checkpoint_path(tiny_ckpt):
    path, model = tiny_ckpt
    pred = load_predictor(str(path), device="cpu")
    assert isinstance(pred, TilePredictor) and isinstance(pred, TorchTilePredictor)
    assert pred.classes == SIX and pred.input_size == 32 and pred.target_mpp == 0.5
    assert pred.feature_names == () and len(pred.sha256) == 64
    assert pred.name == "tiny gct" and pred.describe()["sha256"] == pred.sha256
    with pytest.raises(ValueError, match="32x32 px tiles"):
        pred.predict(_tiles(5, 48))  # another size: refused, never silently resized
    out = pred.predict(_tiles(5, 32))
    assert out.probs.shape == (5, 6) and out.probs.dtype == np.float32
    np.testing.assert_allclose(out.probs.sum(1), 1.0, atol=1e-5)
    assert out.embeddings.shape == (5, 32) and out.features.shape == (5, 0)
    assert all(getattr(m, "deploy", True) for m in pred.model.modules())
    assert model.stages[0][0].deploy is False  # the caller's model is not converted


def test_predictor_matches_manual_preprocessing(tiny_ckpt):
    path, model = tiny_ckpt
    pred = load_predictor(path, device="cpu")
    tiles = _tiles(3, 32, seed=1)
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor([0.8, 0.7, 0.75]).view(1, 3, 1, 1)) / 0.2
    with torch.no_grad():
        ref = torch.softmax(model.eval()(x), 1).numpy()
    np.testing.assert_allclose(pred.predict(tiles).probs, ref, atol=1e-4)
    assert pred.predict(tiles[:0]).probs.shape == (0, 6)
    with pytest.raises(ValueError, match="uint8"):
        pred.predict(tiles.astype(np.float32))


def test_load_predictor_by_checkpoint_name(tiny_ckpt):
    assert (
        load_predictor("tiny-gct", device="cpu").sha256
        == load_predictor("tiny gct", device="cpu").sha256
    )  # file stem or card name


def test_load_predictor_errors(models_folder, tiny_ckpt, tmp_path):
    with pytest.raises(ModelNotFoundError, match="without trained weights") as err:
        load_predictor("repvgg-gct")
    assert "checkpoint" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelNotFoundError, match="unknown model 'nope'") as err:
        load_predictor("nope")
    assert "dab-membrane" in str(err.value) and "tiny-gct" in str(err.value)
    with pytest.raises(CheckpointError, match="pickle-based"):
        load_predictor(tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_predictor(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="CUDA is not available"):
        if torch.cuda.is_available():
            raise ValueError("CUDA is not available (skipped: a GPU is present)")
        load_predictor(tiny_ckpt[0], device="cuda")


def test_non_tile_checkpoint_is_not_a_predictor(models_folder):
    model = get_model("whspn-mlp")
    path = models_folder / "slide.safetensors"
    save_checkpoint(path, model, ModelCard(architecture="whspn-mlp", classes=SIX[:4]))
    with pytest.raises(CheckpointError, match="input_size"):
        load_predictor(path)
    names = [p.name for p in available_predictors()]
    assert "slide" not in names


def test_available_predictors_and_models_dir(tiny_ckpt, models_folder, caplog):
    assert models_dir() == models_folder
    (models_folder / "broken.safetensors").write_bytes(b"\x80\x04garbage")
    infos = available_predictors()
    assert [i.name for i in infos[:2]] == ["dab-cells", "dab-membrane"]  # the default first
    assert infos[0].kind == infos[1].kind == "weight-free"
    by_name = {i.name: i for i in infos}
    assert by_name["tiny-gct"].kind == "checkpoint"
    assert by_name["tiny-gct"].card["classes"] == list(SIX)
    assert "broken" not in by_name
    assert any("broken.safetensors" in r.getMessage() for r in caplog.records)


def test_models_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("NAPARI_HER2_MODELS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert models_dir() == tmp_path / ".napari-her2" / "models"


def test_describe_models(tiny_ckpt, models_folder):
    (models_folder / "broken.safetensors").write_bytes(b"not a checkpoint at all")
    entries = describe_models()
    assert [e["name"] for e in entries[:2]] == ["dab-cells", "dab-membrane"]
    archs = {e["name"]: e for e in entries if e["type"] == "architecture"}
    assert archs["repvgg-gct"]["parameters"] > archs["repvgg-gct"]["deploy_parameters"]
    assert archs["her2-resnet"]["default_args"]["kernel_sizes"] == [11, 7, 5, 3]
    assert archs["abmil"]["kind"] == "mil" and archs["whspn-svm"]["kind"] == "slide"
    ckpts = {e["name"]: e for e in entries if e["type"] == "checkpoint"}
    assert ckpts["tiny-gct"]["valid"] and ckpts["tiny-gct"]["card"]["name"] == "tiny gct"
    assert not ckpts["broken"]["valid"] and "broken.safetensors" in ckpts["broken"]["error"]


def test_dab_membrane_is_loaded_lazily_from_stain(monkeypatch, models_folder):
    """load_predictor('dab-membrane') builds napari_her2.ihc.scorer.DabMembraneScorer()."""
    import sys
    import types

    class FakeScorer:
        def describe(self) -> dict:
            return {"name": "dab-membrane", "thresholds": [0.2, 0.4, 0.6]}

    fake = types.ModuleType("napari_her2.ihc.scorer")
    fake.DabMembraneScorer = FakeScorer
    monkeypatch.setitem(sys.modules, "napari_her2.ihc.scorer", fake)
    assert isinstance(load_predictor("dab-membrane"), FakeScorer)
    membrane = available_predictors()[1]
    assert membrane.name == "dab-membrane" and membrane.card["thresholds"] == [0.2, 0.4, 0.6]
