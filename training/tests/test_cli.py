"""The her2-train command line: one-line errors, a run end to end."""

from __future__ import annotations

import json

from her2_train.cli import build_parser, main


def test_bad_folder_is_one_line_error(tmp_path, capsys):
    rc = main(["tiles", str(tmp_path / "missing"), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "no such dataset folder" in err
    assert "Traceback" not in err


def test_missing_mpp_names_the_file(tmp_path, capsys):
    import tifffile

    from conftest import ihc_image

    d = tmp_path / "data" / "2+"
    d.mkdir(parents=True)
    tifffile.imwrite(d / "nompp.tif", ihc_image(2, 0), photometric="rgb")
    rc = main(["tiles", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "nompp.tif" in err and "--mpp" in err


def test_tiles_command(tiny_data, tmp_path, capsys):
    rc = main(["tiles", str(tiny_data), "--out", str(tmp_path), "--tile-size", "32",
               "--target-mpp", "1", "--epochs", "2", "--max-tiles", "16", "--quiet",
               "--name", "tiny"])
    assert rc == 0, capsys.readouterr().err
    assert "tiny.safetensors" in capsys.readouterr().out
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["config"]["tiles"]["tile_size"] == 32
    assert config["config"]["recipe"]["optimizer"] == "adamw"


def test_parser_presets_and_subcommands():
    p = build_parser()
    a = p.parse_args(["tiles", "D", "--out", "R", "--preset", "seed001", "--arch", "repvgg-se"])
    assert (a.preset, a.arch) == ("seed001", "repvgg-se")
    a = p.parse_args(["whspn", "D", "--out", "R", "--tile-model", "t.safetensors", "--kind",
                      "svm"])
    assert a.kind == "svm"
    assert p.parse_args(["ship", "--out", "R"]).folds == 4
