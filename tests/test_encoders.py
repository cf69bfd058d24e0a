"""load_encoder / list_encoders: where weights are found, the one-line errors, snapshot
folders, timm without timm, and the shipped tile models as encoders (the same embeddings
as the scoring pipeline's)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_her2.errors import CheckpointError, ModelNotFoundError
from napari_her2.models.encoders import SPECS, Encoder, list_encoders, load_encoder
from napari_her2.models.encoders.loading import spec_of_folder

pytestmark = pytest.mark.usefixtures("isolated_env")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_missing_weights_is_one_line_saying_where_to_put_and_get_them(name, tmp_path):
    spec = SPECS[name]
    with pytest.raises(ModelNotFoundError) as info:
        load_encoder(name, models_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and message.startswith("no weights found for encoder")
    assert spec.name in message and str(tmp_path / "encoders" / spec.name) in message
    assert spec.url in message and "licence" in message


def test_a_weights_path_that_does_not_exist(tmp_path):
    with pytest.raises(ModelNotFoundError, match="^weights file not found: .*uni"):
        load_encoder("uni", weights=tmp_path / "nope.bin")


def test_aliases_and_repo_ids_name_the_same_encoder(tmp_path):
    for alias in ("UNI2-h", "uni_v2", "MahmoodLab/UNI2-h"):
        with pytest.raises(ModelNotFoundError, match="encoder uni2-h"):
            load_encoder(alias, models_dir=tmp_path)


def test_an_unknown_name_lists_what_there_is():
    with pytest.raises(ModelNotFoundError) as info:
        load_encoder("no-such-encoder")
    message = str(info.value)
    assert message.startswith("unknown encoder 'no-such-encoder'")
    assert "uni2-h" in message and "her2-resnet-tma" in message


def test_timm_without_timm_names_the_extra(tmp_path):
    weights = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(1)}, str(weights))
    try:
        import timm  # noqa: F401
    except Exception:  # noqa: BLE001 - not importable here, as expected
        with pytest.raises(CheckpointError, match=r"napari-her2\[encoders-timm\]"):
            load_encoder("timm:vit_small_patch16_224", weights=weights)
    with pytest.raises(ModelNotFoundError, match="no weights given"):
        load_encoder("timm:vit_small_patch16_224")


def _small_uni_weights(folder, name="pytorch_model.bin"):
    from test_encoder_vit import random_state, small_spec

    spec = small_spec("uni")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(random_state(spec), folder / name)
    return spec


def test_weights_in_the_models_folder_and_snapshot_folders_are_found(tmp_path, monkeypatch):
    from napari_her2.models.encoders import loading

    small = _small_uni_weights(tmp_path / "models" / "encoders" / "uni")
    monkeypatch.setitem(loading.SPECS, "uni", small)  # the small variant stands in for UNI
    monkeypatch.setattr(loading, "find_spec",
                        lambda n: small if n.lower() in ("uni", "mahmoodlab/uni") else None)
    enc = load_encoder("uni", models_dir=tmp_path / "models")
    assert isinstance(enc, Encoder) and enc.name == "uni" and enc.dim == small.dim
    entry = {e["name"]: e for e in list_encoders(tmp_path / "models")}["uni"]
    assert entry["weights_found"] and entry["weights"].endswith("pytorch_model.bin")
    snap = tmp_path / "hub" / "models--MahmoodLab--UNI" / "snapshots" / "abc123"
    _small_uni_weights(snap, "model.safetensors.bin")
    (snap / "model.safetensors.bin").rename(snap / "pytorch_model.bin")
    enc2 = load_encoder(str(snap))
    tiles = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert enc2.embed(tiles).shape == (2, small.dim)


def test_snapshot_folders_are_told_apart_by_config_or_name(tmp_path):
    named = tmp_path / "Virchow2"
    named.mkdir()
    assert spec_of_folder(named).name == "virchow2"
    other = tmp_path / "weights"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_name_or_path": "owkin/phikon-v2"}))
    assert spec_of_folder(other).name == "phikon-v2"
    (tmp_path / "nothing").mkdir()
    assert spec_of_folder(tmp_path / "nothing") is None
    with pytest.raises(ModelNotFoundError, match="cannot tell which encoder"):
        load_encoder(str(tmp_path / "nothing"))


def test_list_encoders_lists_every_foundation_encoder_and_the_shipped_tile_model(tmp_path):
    entries = list_encoders(tmp_path)
    names = [e["name"] for e in entries]
    assert names[: len(SPECS)] == list(SPECS)
    for e in entries[: len(SPECS)]:
        assert {"architecture", "dim", "input_px", "mpp", "mean", "std", "licence",
                "weights_found", "weights_dir", "get_weights"} <= set(e)
        assert e["weights_found"] is False
    tile = [e for e in entries if e["kind"] == "tile-model"]
    assert [e["name"] for e in tile] == ["her2-resnet-tma"]


def test_the_shipped_tile_model_is_an_encoder_of_its_pipeline_embeddings():
    from napari_her2.models import load_predictor

    enc = load_encoder("her2-resnet")
    assert enc.name == "her2-resnet-tma" and enc.kind == "tile-model"
    predictor = load_predictor("her2-resnet-tma", device="cpu")
    assert enc.sha256 == predictor.sha256 and enc.dim == 512
    assert (enc.input_px, enc.mpp) == (64, 1.0)
    tiles = np.random.default_rng(2).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(enc.embed(tiles), predictor.predict(tiles).embeddings)
    bigger = np.repeat(np.repeat(tiles, 2, axis=1), 2, axis=2)  # any size is resized
    assert enc.embed(bigger).shape == (5, 512)
    assert enc.embed(tiles[:0]).shape == (0, 512)
    with pytest.raises(ValueError, match="uint8"):
        enc.embed(tiles.astype(np.float32))


def test_a_phikon_v2_snapshot_folder_loads_by_its_config(tmp_path):
    """A transformers snapshot (config.json + model.safetensors in Dinov2Model names) loads
    through the public entry point; its config gives the width and depth."""
    from napari_her2.models.encoders import encoder_from_spec
    from test_encoder_vit import random_state, small_spec, to_hf_dinov2

    spec = small_spec("phikon-v2")
    sd = random_state(spec)
    snap = tmp_path / "phikon"
    snap.mkdir()
    save_file(to_hf_dinov2(sd), str(snap / "model.safetensors"))
    (snap / "config.json").write_text(json.dumps({
        "_name_or_path": "owkin/phikon-v2", "model_type": "dinov2", "hidden_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 2, "patch_size": 16, "mlp_ratio": 4,
        "layer_norm_eps": 1e-6, "layerscale_value": 1.0, "hidden_act": "gelu",
        "qkv_bias": True, "use_swiglu_ffn": False, "image_size": 64}))
    enc = load_encoder(str(snap))
    assert enc.name == "phikon-v2" and enc.dim == 32 and enc.input_px == 224
    tiles = np.random.default_rng(3).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    same = encoder_from_spec(dataclasses.replace(spec, input_px=224), snap / "model.safetensors")
    np.testing.assert_allclose(enc.embed(tiles), same.embed(tiles), rtol=1e-6, atol=1e-6)
    assert np.isfinite(enc.embed(tiles)).all()
