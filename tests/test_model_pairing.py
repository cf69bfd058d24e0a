"""A slide model brings its own tile model: chosen for the user, or refused before scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_her2 import score_slide
from napari_her2._sample_data import ihc_mosaic
from napari_her2.cli import main
from napari_her2.errors import CheckpointError
from napari_her2.models import ModelCard, get_model, load_predictor, read_card, save_checkpoint
from napari_her2.models.catalog import ENV_VAR, PACKAGE_CHECKPOINTS
from napari_her2.models.pairing import tile_model_of
from napari_her2.slide import write_pyramid_tiff

HER2 = ("0", "1+", "2+", "3+")


def _note(card: ModelCard) -> str:
    """The description her2-train writes into a slide model's card."""
    return (f"Gated attention MIL over the embeddings of tile model {card.name} "
            f"({card.architecture}, sha256 {card.sha256[:16]}); use it with that tile model.")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairing")
    models = folder / "models"
    models.mkdir()
    slide = write_pyramid_tiff(folder / "s.tif", ihc_mosaic(rows=1, cols=2, gap=64), 0.5)
    tile_card = save_checkpoint(models / "tile.safetensors", get_model("her2-resnet", num_classes=4),
                                ModelCard(architecture="her2-resnet", classes=HER2, input_size=64,
                                          target_mpp=0.5, name="paired-tile"))
    other_card = save_checkpoint(folder / "other.safetensors",
                                 get_model("her2-resnet", num_classes=4),
                                 ModelCard(architecture="her2-resnet", classes=HER2,
                                           input_size=64, target_mpp=0.5, name="other-tile"))
    assert other_card.sha256 != tile_card.sha256
    dim = load_predictor(str(models / "tile.safetensors"), device="cpu").predict(
        np.zeros((1, 64, 64, 3), np.uint8)).embeddings.shape[1]
    mil = folder / "mil.safetensors"
    save_checkpoint(mil, get_model("abmil", num_classes=4, in_features=dim), ModelCard(
        architecture="abmil", classes=HER2, name="mil-paired", description=_note(tile_card)))
    # a MIL model whose tile model is nowhere installed
    lost = tile_card.replace(sha256="0" * 64)
    orphan = folder / "orphan.safetensors"
    save_checkpoint(orphan, get_model("abmil", num_classes=4, in_features=dim), ModelCard(
        architecture="abmil", classes=HER2, name="mil-orphan", description=_note(lost)))
    return {"slide": slide, "models": models, "mil": mil, "orphan": orphan,
            "other": folder / "other.safetensors", "tile_sha": tile_card.sha256}


@pytest.fixture
def models_folder(files, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(files["models"]))
    return files["models"]


def test_the_shipped_mil_card_names_the_shipped_tile_model():
    ref = tile_model_of(read_card(PACKAGE_CHECKPOINTS / "abmil-tma.safetensors"))
    tile = read_card(PACKAGE_CHECKPOINTS / "her2-resnet-tma.safetensors")
    assert ref is not None and ref.name == "her2-resnet-tma" and ref.matches(tile.sha256)


def test_a_slide_model_alone_scores_with_its_own_tile_model(files, models_folder):
    report = score_slide(files["slide"], slide_model=str(files["mil"]))
    assert report.predictor.sha256 == files["tile_sha"]
    assert report.call.method == "abmil-monte-carlo"
    assert report.to_dict()["params"]["model"]["name"].endswith("tile.safetensors")


def test_the_cli_pairs_too(files, models_folder, tmp_path, capsys):
    rc = main(["score", str(files["slide"]), "--slide-model", str(files["mil"]),
               "--out", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["model"]["sha256"] == files["tile_sha"]
    assert data["slide_model"]["name"] == "mil-paired"


def test_a_missing_tile_model_is_refused_before_scoring(files, models_folder, tmp_path,
                                                        capsys, monkeypatch):
    import napari_her2.run.pipeline as pipeline

    def never(*a, **k):
        raise AssertionError("the slide was read before the refusal")

    monkeypatch.setattr(pipeline, "detect_tissue", never)
    with pytest.raises(CheckpointError, match="orphan.safetensors: its tile model"):
        score_slide(files["slide"], slide_model=str(files["orphan"]))
    rc = main(["score", str(files["slide"]), "--slide-model", str(files["orphan"]),
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc != 0 and err.count("\n") == 1 and "is not installed" in err
    assert not (tmp_path / "out" / "s.json").exists()


def test_another_tile_model_is_refused_before_scoring(files, models_folder):
    with pytest.raises(CheckpointError, match="trained over tile model paired-tile"):
        score_slide(files["slide"], str(files["other"]), slide_model=str(files["mil"]))


def test_evaluate_pairs_a_slide_model_alone(files, models_folder, tmp_path):
    import shutil

    from napari_her2.cohort.evaluate import evaluate_folder
    from napari_her2.params import ScoringParams

    folder = tmp_path / "labelled"
    folder.mkdir()
    shutil.copy(files["slide"], folder / "1_s.tif")
    params = ScoringParams().with_overrides(slide_model=str(files["mil"]))
    result = evaluate_folder(folder, tmp_path / "out", params=params)
    (image,) = result.images
    assert image.call is not None, image.no_call_reason
