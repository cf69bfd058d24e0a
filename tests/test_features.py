"""``napari-her2 features`` and run.features: the TRIDENT/CLAM layout (features, level-0
coords, attributes), coords on the tile grid, features equal to Encoder.embed of the tiles,
regions, several slides, atomic writes and one-line errors."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from napari_her2._sample_data import ihc_mosaic
from napari_her2.cli import main
from napari_her2.errors import OutputError
from napari_her2.models.encoders import load_encoder
from napari_her2.run.features import extract_features, prepare_features, write_features
from napari_her2.run.inference import read_tile
from napari_her2.slide import open_slide, write_pyramid_tiff

pytestmark = pytest.mark.usefixtures("isolated_env")
REGION = [[0, 0], [640, 0], [640, 600], [0, 600], [0, 0]]  # level-0 x, y


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("features") / "mosaic.tif"
    return write_pyramid_tiff(path, ihc_mosaic(rows=2, cols=2, gap=64), 0.5)


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("her2-resnet")


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str, *names: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-her2: error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def test_layout_attrs_coords_and_features(capsys, slide, encoder, tmp_path):
    rc, out, err = run(capsys, "features", slide, "--encoder", "her2-resnet",
                       "--out", tmp_path)
    assert rc == 0, err
    assert f"wrote {tmp_path / 'mosaic.h5'}" in out
    with h5py.File(tmp_path / "mosaic.h5", "r") as f:
        features, coords = f["features"][:], f["coords"][:]
        attrs, coord_attrs = dict(f.attrs), dict(f["coords"].attrs)
    assert features.dtype == np.float32 and features.shape[1] == encoder.dim == 512
    assert coords.shape == (len(features), 2) and coords.dtype.kind == "i"
    assert attrs["patch_size_level0"] == coord_attrs["patch_size_level0"] == 128
    assert attrs["patch_size"] == 64 and attrs["mpp"] == attrs["target_mpp"] == 1.0
    assert attrs["level0_mpp"] == 0.5 and attrs["target_magnification"] == 10
    assert attrs["encoder"] == "her2-resnet-tma"
    assert attrs["encoder_sha256"] == encoder.sha256 and len(encoder.sha256) == 64
    # coords are the level-0 top-left corners of the tissue tiles of the grid, row-major
    grid = prepare_features(slide, encoder).grid
    rows, cols = grid.tissue_tiles()
    np.testing.assert_array_equal(coords, np.stack([cols * 128, rows * 128], axis=1))
    assert len(coords) == grid.n_tissue > 0
    # features are the encoder's embedding of exactly those tiles
    with open_slide(slide) as s:
        tiles = np.stack([read_tile(s, grid, int(r), int(c)) for r, c in zip(rows, cols)])
    np.testing.assert_allclose(features, encoder.embed(tiles), rtol=1e-5, atol=1e-5)


def test_a_region_restricts_the_coords(capsys, slide, tmp_path):
    roi = tmp_path / "roi.geojson"
    roi.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Polygon", "coordinates": [REGION]},
        "properties": {"objectType": "annotation"}}]}))
    rc, _, err = run(capsys, "features", slide, "--encoder", "her2-resnet", "--region", roi,
                     "--out", tmp_path / "out")
    assert rc == 0, err
    with h5py.File(tmp_path / "out" / "mosaic.h5", "r") as f:
        coords = f["coords"][:]
    centres = coords + 64
    assert len(coords) > 0
    assert (centres[:, 0] < 640).all() and (centres[:, 1] < 600).all()
    whole = prepare_features(slide, load_encoder("her2-resnet")).grid.n_tissue
    assert len(coords) < whole


def test_a_small_vit_encoder_through_the_python_api(slide, tmp_path):
    from safetensors.torch import save_file

    from napari_her2.models.encoders import encoder_from_spec
    from test_encoder_vit import random_state, small_spec

    spec = small_spec("virchow2")
    save_file(random_state(spec), str(tmp_path / "model.safetensors"))
    enc = dataclasses.replace(encoder_from_spec(spec, tmp_path), mpp=2.0)
    result = extract_features(slide, enc)
    assert result.features.shape == (len(result.coords), spec.dim)
    assert result.attrs()["patch_size_level0"] == spec.input_px * 4
    path = write_features(result, tmp_path / "out")
    with h5py.File(path, "r") as f:
        assert f.attrs["encoder"] == "virchow2" and f["features"].shape[1] == spec.dim


def test_several_slides_and_a_bad_one(capsys, slide, tmp_path):
    folder = tmp_path / "cohort"
    folder.mkdir()
    (folder / "a.tif").write_bytes(slide.read_bytes())
    (folder / "b.tif").write_bytes(slide.read_bytes())
    (folder / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    rc, out, err = run(capsys, "features", folder, "--encoder", "her2-resnet",
                       "--out", tmp_path / "out")
    assert rc == 1
    one_line_error(err, "broken.tif")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.h5", "b.h5"]
    assert "2 of 3 slides embedded" in out


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(slide, encoder, tmp_path,
                                                                  monkeypatch):
    from napari_her2.export import features as export_features

    result = extract_features(slide, encoder)
    first = write_features(result, tmp_path)
    before = first.read_bytes()

    def fail(value):
        raise OSError("disk full")

    monkeypatch.setattr(export_features, "_attr", fail)
    with pytest.raises(OutputError, match="mosaic.h5: not written"):
        write_features(result, tmp_path)
    assert first.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["mosaic.h5"]


def test_errors_are_one_line(capsys, slide, tmp_path, monkeypatch):
    rc, _, err = run(capsys, "features", tmp_path / "missing.svs", "--encoder", "her2-resnet",
                     "--out", tmp_path / "o")
    assert rc == 1
    one_line_error(err, "missing.svs")
    rc, _, err = run(capsys, "features", slide, "--encoder", "uni", "--out", tmp_path / "o")
    assert rc == 1
    line = one_line_error(err, "uni", "huggingface.co/MahmoodLab/UNI")
    assert line.startswith("napari-her2: error: no weights found")
    with pytest.raises(SystemExit) as usage:
        main(["features", str(slide), "--encoder", "her2-resnet", "--mpp", "-1"])
    assert usage.value.code == 2
    monkeypatch.setitem(sys.modules, "h5py", None)
    rc, _, err = run(capsys, "features", slide, "--encoder", "her2-resnet",
                     "--out", tmp_path / "o")
    assert rc == 1
    one_line_error(err, "h5py", "napari-her2[features]")


def test_models_lists_the_encoders(capsys):
    rc, out, _ = run(capsys, "models")
    assert rc == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line and line[0] != " "}
    for name in ("uni", "uni2-h", "virchow2", "h-optimus-0", "h-optimus-1", "phikon-v2",
                 "conch-v1.5", "prov-gigapath"):
        assert "[encoder]" in lines[name] and "licence" in lines[name]
    rc, out, _ = run(capsys, "models", "--json")
    kinds = {e["name"]: e.get("kind") for e in json.loads(out)}
    assert kinds["virchow2"] == "encoder"
