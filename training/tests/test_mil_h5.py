"""``her2-train mil --features``: attention MIL on bags read from shared feature files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from napari_her2.models import read_card

from her2_train.cli import main
from her2_train.errors import DatasetError
from her2_train.features_h5 import load_feature_bags, read_feature_file

h5py = pytest.importorskip("h5py")

DIM = 16
SHA = "ab" * 32
SCORES = ("0", "1+", "2+", "3+")


def write_h5(path: Path, features: np.ndarray, *, encoder: str = "tiny-enc", sha: str = SHA,
             mpp: float = 0.5, patch0: int = 448, on_coords: bool = False,
             patch: int | None = 224) -> Path:
    """A feature file as napari-her2 features / TRIDENT write it."""
    n = len(features)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("features", data=features.astype(np.float32))
        coords = h5.create_dataset("coords", data=np.stack(
            [np.arange(n) * patch0, np.zeros(n, int)], axis=1).astype(np.int64))
        node = coords if on_coords else h5
        node.attrs.update({"encoder": encoder, "encoder_sha256": sha, "mpp": mpp,
                           "patch_size_level0": patch0})
        if patch is not None:
            node.attrs["patch_size"] = patch
    return path


def bag(label: int, rng: np.random.Generator, n: int = 40) -> np.ndarray:
    """A separable bag: half its tiles carry the label's direction, the rest are noise."""
    x = rng.normal(0, 1, (n, DIM))
    x[: n // 2, label] += 4.0
    return x


def make_folder(root: Path, per_class: int, seed: int, **kw) -> tuple[Path, Path]:
    """<stem>.h5 files and a CLAM-style labels CSV (slide_id with the slide's suffix)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = ["slide_id,label"]
    for label, score in enumerate(SCORES):
        for i in range(per_class):
            stem = f"s{seed}_{label}_{i}"
            write_h5(root / f"{stem}.h5", bag(label, rng), on_coords=(i % 2 == 1), **kw)
            rows.append(f"{stem}.svs,{score}")
    csv = root.parent / f"{root.name}_labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    return root, csv


def test_trains_on_separable_bags_and_the_card_names_the_encoder(tmp_path, capsys):
    train, labels = make_folder(tmp_path / "train", per_class=3, seed=1)
    ext, ext_labels = make_folder(tmp_path / "ext", per_class=1, seed=2)
    run = tmp_path / "run"
    rc = main(["mil", "--features", str(train), "--labels", str(labels), "--out", str(run),
               "--external", str(ext), "--external-labels", str(ext_labels),
               "--epochs", "12", "--bag-size", "16", "--folds", "2", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["external"]["accuracy"] >= 0.75
    assert metrics["cross_validation"]["calibration"]["temperature"] > 0
    card = read_card(run / "abmil.safetensors")
    assert card.encoder == {"name": "tiny-enc", "sha256": SHA, "dim": DIM, "mpp": 0.5,
                            "patch_size_level0": 448, "input_px": 224}
    assert card.arch_args["in_features"] == DIM and card.target_mpp == 0.5
    assert "tile model" not in card.description  # not a tile-model pairing note
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["encoder"]["sha256"] == SHA and len(manifest["train"]) == 12


def test_the_plugin_reads_the_encoder_back(tmp_path):
    from napari_her2.models.pairing import EncoderRef, encoder_of, slide_pairing
    from napari_her2.scoring import load_slide_model

    train, labels = make_folder(tmp_path / "train", per_class=1, seed=3)
    assert main(["mil", "--features", str(train), "--labels", str(labels),
                 "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet"]) == 0
    path = tmp_path / "run" / "abmil.safetensors"
    ref = encoder_of(read_card(path))
    assert ref == EncoderRef("tiny-enc", SHA, DIM, 0.5, 448, 224)
    assert slide_pairing(read_card(path), tmp_path / "no-models") == ref
    assert load_slide_model(path).kind == "mil"


@pytest.mark.parametrize("change", [{"encoder": "other-enc"}, {"sha": "cd" * 32}, {"dim": 8}])
def test_mixed_encoders_are_refused_naming_the_first_file_that_differs(tmp_path, capsys,
                                                                        change):
    train, labels = make_folder(tmp_path / "train", per_class=1, seed=4)
    odd = sorted(train.glob("*.h5"))[2]
    dim = change.pop("dim", DIM)
    write_h5(odd, np.random.default_rng(0).normal(size=(10, dim)), **change)
    rc = main(["mil", "--features", str(train), "--labels", str(labels),
               "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1, err
    assert str(odd) in err and "one MIL model takes one encoder's features" in err


def test_an_external_folder_of_another_encoder_is_refused(tmp_path):
    train, labels = make_folder(tmp_path / "train", per_class=1, seed=5)
    _, enc = load_feature_bags(train, labels)
    ext, ext_labels = make_folder(tmp_path / "ext", per_class=1, seed=6, encoder="other")
    with pytest.raises(DatasetError, match="features of encoder other"):
        load_feature_bags(ext, ext_labels, encoder=enc)


def test_a_slide_without_a_label_is_refused(tmp_path, capsys):
    train, labels = make_folder(tmp_path / "train", per_class=1, seed=7)
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join(lines[:-1]) + "\n")  # the last slide loses its label
    rc = main(["mil", "--features", str(train), "--labels", str(labels),
               "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert "s7_3_0.h5: slide 's7_3_0' has no label" in err


def test_feature_files_without_encoder_attributes_are_refused(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("features", data=np.zeros((3, 4), np.float32))
    with pytest.raises(DatasetError, match="a.h5: no 'encoder' and 'encoder_sha256'"):
        read_feature_file(path)
    write_h5(path, np.zeros((3, 4)), sha="not-a-hash")
    with pytest.raises(DatasetError, match="is not a sha256"):
        read_feature_file(path)
    path.write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="cannot read it as HDF5"):
        read_feature_file(path)


def test_max_tiles_keeps_evenly_spread_rows(tmp_path):
    path = write_h5(tmp_path / "a.h5", np.arange(100 * DIM, dtype=float).reshape(100, DIM))
    f = read_feature_file(path, max_tiles=5)
    assert f.features[:, 0].tolist() == [i * DIM for i in (0, 25, 50, 74, 99)]
    assert read_feature_file(path).features.shape == (100, DIM)


def test_missing_h5py_names_the_extra(tmp_path, monkeypatch):
    train, labels = make_folder(tmp_path / "train", per_class=1, seed=8)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DatasetError, match=r"pip install 'her2-train\[features\]'"):
        load_feature_bags(train, labels)


@pytest.mark.parametrize("args", [["--tile-model", "x.safetensors"], ["DATA"]])
def test_the_command_wants_features_or_images_and_a_tile_model(tmp_path, capsys, args):
    rc = main(["mil", *args, "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "--features DIR" in err
