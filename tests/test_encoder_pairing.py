"""A MIL model trained on feature files brings its encoder: a tile model, paired as tile
models are, or a foundation encoder whose embeddings the pipeline computes for the scored
tiles; a missing encoder or other weights are refused before any tile is read."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from napari_her2 import score_slide
from napari_her2._sample_data import ihc_mosaic
from napari_her2.cli import main
from napari_her2.errors import CheckpointError, ModelNotFoundError
from napari_her2.models import ModelCard, get_model, load_predictor, save_checkpoint
from napari_her2.models.catalog import ENV_VAR
from napari_her2.models.encoders import Encoder
from napari_her2.models.pairing import EncoderRef, TileModelRef, slide_pairing
from napari_her2.slide import write_pyramid_tiff

HER2 = ("0", "1+", "2+", "3+")
DIM = 8
SHA = hashlib.sha256(b"tiny-enc weights").hexdigest()
ENCODER = {"name": "tiny-enc", "sha256": SHA, "dim": DIM, "mpp": 1.0, "input_px": 64,
           "patch_size_level0": 128}


def tiny_encoder(sha256: str = SHA, seen: list[int] | None = None) -> Encoder:
    """A small foundation-like encoder: per-channel means, spreads and minima of the tile at
    its input side; ``seen`` gets the size of every batch it embeds."""

    def run(tiles: np.ndarray) -> np.ndarray:
        if seen is not None:
            seen.append(len(tiles))
        x = tiles.astype(np.float32) / 255
        return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2)),
                               x.min(axis=(1, 2))[:, :2]], axis=1)

    return Encoder("tiny-enc", sha256, DIM, 64, 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0),
                   "test", run=run)


@pytest.fixture
def encoders(monkeypatch):
    """The encoders ``load_encoder`` finds (name -> encoder); empty: none installed."""
    import napari_her2.models.encoders as package

    table: dict[str, Encoder] = {}

    def load_encoder(name_or_path, *, weights=None, models_dir=None, device="cpu"):
        if name_or_path not in table:
            raise ModelNotFoundError(f"unknown encoder {name_or_path!r}")
        return table[name_or_path]

    monkeypatch.setattr(package, "load_encoder", load_encoder)
    return table


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoder-pairing")
    models = folder / "models"
    models.mkdir()
    slide = write_pyramid_tiff(folder / "s.tif", ihc_mosaic(rows=1, cols=2, gap=64), 0.5)
    tile_card = save_checkpoint(models / "tile.safetensors", get_model("her2-resnet"),
                                ModelCard(architecture="her2-resnet", classes=HER2,
                                          input_size=64, target_mpp=0.5, name="paired-tile"))
    save_checkpoint(folder / "cnn.safetensors", get_model("her2-resnet"),
                    ModelCard(architecture="her2-resnet", classes=HER2, input_size=64,
                              target_mpp=0.5, name="other-cnn"))
    tile_dim = load_predictor(str(models / "tile.safetensors"), device="cpu").predict(
        np.zeros((1, 64, 64, 3), np.uint8)).embeddings.shape[1]
    foundation = folder / "mil-enc.safetensors"
    save_checkpoint(foundation, get_model("abmil", in_features=DIM), ModelCard(
        architecture="abmil", classes=HER2, name="mil-enc", target_mpp=1.0, encoder=ENCODER))
    # trained on feature files that the installed tile model wrote
    over_tile = folder / "mil-tile.safetensors"
    save_checkpoint(over_tile, get_model("abmil", in_features=tile_dim), ModelCard(
        architecture="abmil", classes=HER2, name="mil-tile", encoder={
            "name": "paired-tile", "sha256": tile_card.sha256, "dim": tile_dim}))
    return {"slide": slide, "models": models, "foundation": foundation,
            "over_tile": over_tile, "cnn": folder / "cnn.safetensors",
            "tile_sha": tile_card.sha256}


@pytest.fixture
def models_folder(files, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(files["models"]))
    return files["models"]


@pytest.fixture
def no_reads(monkeypatch):
    """Fail the test when the slide's tissue is looked at (a refusal must come first)."""
    import napari_her2.run.pipeline as pipeline

    def never(*a, **k):
        raise AssertionError("the slide was read before the refusal")

    monkeypatch.setattr(pipeline, "detect_tissue", never)


def test_old_cards_have_no_encoder_and_new_ones_round_trip():
    card = ModelCard(architecture="abmil", classes=HER2, arch_args={"in_features": DIM},
                     encoder=ENCODER)
    assert ModelCard.from_json(card.to_json()) == card
    plain = ModelCard(architecture="abmil", classes=HER2)
    assert "encoder" not in plain.to_dict() and ModelCard.from_json(plain.to_json()) == plain
    for bad, match in (({**ENCODER, "sha256": "x"}, "encoder sha256"),
                       ({**ENCODER, "dim": 9}, "differs from the model's in_features"),
                       ({**ENCODER, "colour": 1}, "unknown encoder field"),
                       ({"sha256": SHA}, "encoder name")):
        with pytest.raises(ValueError, match=match):
            ModelCard(architecture="abmil", classes=HER2, arch_args={"in_features": DIM},
                      encoder=bad)


def test_a_card_naming_an_installed_tile_model_pairs_with_it(files, models_folder, encoders):
    from napari_her2.models import read_card

    assert isinstance(slide_pairing(read_card(files["over_tile"])), TileModelRef)
    assert isinstance(slide_pairing(read_card(files["foundation"])), EncoderRef)
    report = score_slide(files["slide"], slide_model=str(files["over_tile"]))
    assert report.predictor.sha256 == files["tile_sha"]
    assert report.call.method == "abmil-monte-carlo"
    with pytest.raises(CheckpointError, match="trained over tile model paired-tile"):
        score_slide(files["slide"], str(files["cnn"]), slide_model=str(files["over_tile"]))


def test_the_mil_runs_on_its_foundation_encoders_embeddings(files, models_folder, encoders):
    seen: list[int] = []
    encoders["tiny-enc"] = tiny_encoder(seen=seen)
    report = score_slide(files["slide"], slide_model=str(files["foundation"]))
    assert not hasattr(report.predictor, "model")  # tile classes: a weight-free scorer
    assert (report.grid.tile_size, report.grid.target_mpp) == (64, 1.0)  # the encoder's
    assert report.call.method == "abmil-monte-carlo"
    readable = int(report.results.readable.sum())
    assert sum(seen) == readable > 0
    assert report.results.embeddings.shape == (len(report.results), DIM)
    assert report.to_dict()["slide_model"]["encoder"] == ENCODER
    # the encoder embeds the tiles proper, not the context the cell scorer reads around them
    from napari_her2.run.inference import read_tile

    rows, cols = report.results.rows[:4], report.results.cols[:4]
    tiles = np.stack([read_tile(report.slide, report.grid, r, c) for r, c in zip(rows, cols)])
    np.testing.assert_allclose(report.results.embeddings[:4], encoders["tiny-enc"].embed(tiles),
                               atol=1e-6)


def test_the_cli_scores_with_the_encoder_and_names_it(files, models_folder, encoders, tmp_path,
                                                      capsys):
    encoders["tiny-enc"] = tiny_encoder()
    rc = main(["score", str(files["slide"]), "--slide-model", str(files["foundation"]),
               "--out", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["slide_model"]["encoder"]["sha256"] == SHA


def test_a_missing_encoder_is_refused_before_any_tile(files, models_folder, encoders,
                                                      no_reads, tmp_path, capsys):
    with pytest.raises(CheckpointError, match=r"mil-enc: its encoder tiny-enc \(sha256 "
                                              r"[0-9a-f]{16}\) is not available"):
        score_slide(files["slide"], slide_model=str(files["foundation"]))
    rc = main(["score", str(files["slide"]), "--slide-model", str(files["foundation"]),
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc != 0 and err.count("\n") == 1 and "is not available" in err
    assert not (tmp_path / "out" / "s.json").exists()


def test_an_encoder_with_other_weights_is_refused_before_any_tile(files, models_folder,
                                                                  encoders, no_reads):
    encoders["tiny-enc"] = tiny_encoder(sha256="0" * 64)
    with pytest.raises(CheckpointError, match="has weights sha256 0000000000000000, other"):
        score_slide(files["slide"], slide_model=str(files["foundation"]))


def test_tiles_unlike_the_encoders_are_refused(files, models_folder, encoders, no_reads):
    encoders["tiny-enc"] = tiny_encoder()
    with pytest.raises(CheckpointError, match="embeds 64 px tiles at 1 µm/px and other-cnn "
                                              "reads 64 px tiles at 0.5 µm/px"):
        score_slide(files["slide"], str(files["cnn"]), slide_model=str(files["foundation"]))
    with pytest.raises(CheckpointError, match="dab-membrane reads 64 px tiles at 0.5 µm/px"):
        score_slide(files["slide"], "dab-membrane", slide_model=str(files["foundation"]),
                    target_mpp=0.5)
    with pytest.raises(CheckpointError, match="reads 128 px tiles at 1 µm/px"):
        score_slide(files["slide"], "dab-membrane", slide_model=str(files["foundation"]),
                    tile_size=128)


def test_the_form_names_the_paired_encoder(files, models_folder, viewer_widget):
    _, widget = viewer_widget
    widget.form.add_slide_model(files["foundation"])
    assert widget.form.pairing_info.value == f"encoder: tiny-enc (sha256 {SHA[:16]}) (its own)"
    widget.form.add_slide_model(files["over_tile"])
    assert widget.form.pairing_info.value == "tile model: paired-tile (its own)"
    assert str(widget.form.model_combo.value).endswith("tile.safetensors")
