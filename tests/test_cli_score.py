"""``napari-her2 score / models / demo / batch``: outputs, summary line, exit codes, and
one-line errors without tracebacks; in-process through ``cli.main`` and once through the
installed executable."""

from __future__ import annotations

import csv
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from napari_her2._sample_data import ihc_mosaic
from napari_her2.classes import HER2_SCORES
from napari_her2.cli import main
from napari_her2.slide import write_pyramid_tiff

EXE = Path(sys.executable).parent / "napari-her2"
FAST = ["--tile-size", "64", "--target-mpp", "1.0"]
#: the summary line: "<file>: HER2 <score> (<category>)[, confidence C ...]; N tissue tiles in T s"
SCORE = r"(?:0|1\+|2\+|3\+)"
CATEGORY = r"(?:negative|equivocal|positive)"
#: a clear call ("HER2 2+ (equivocal), confidence 0.97") or a borderline one ("HER2 borderline
#: 0 / 1+: review (...)", "HER2 borderline 2+ / 3+ (equivocal / positive): review (...)"),
#: then the tile count
SUMMARY = re.compile(
    rf"^(?P<name>\S+): HER2 (?:(?P<score>{SCORE}) \((?P<category>{CATEGORY})\)"
    rf"|borderline {SCORE} / {SCORE}(?: \({CATEGORY} / {CATEGORY}\))?: review)"
    r"(, confidence \d\.\d\d)?.*?; (?P<tiles>\d+) tissue tiles in \d+\.\d s(;|$)"
)


pytestmark = pytest.mark.usefixtures("isolated_env")


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "mosaic.tif"
    return write_pyramid_tiff(path, ihc_mosaic(rows=2, cols=2, gap=64), 0.5)


@pytest.fixture(scope="module")
def no_mpp_slide(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli-nompp") / "no-mpp.tif"
    return write_pyramid_tiff(path, ihc_mosaic(rows=1, cols=1, gap=64), None)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(err: str, *names: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    line = lines[0]
    assert line.startswith("napari-her2: error: "), line
    for name in names:
        assert name in line, f"{name!r} not in {line!r}"
    return line


def small_checkpoint(path: Path):
    """A her2-resnet checkpoint with random (seeded) weights; returns the written card."""
    import torch

    from napari_her2.models import ModelCard, get_model, save_checkpoint

    torch.manual_seed(0)
    model = get_model("her2-resnet", num_classes=4)
    card = ModelCard(architecture="her2-resnet", classes=HER2_SCORES, input_size=64,
                     target_mpp=0.5, description="test checkpoint, random weights")
    return save_checkpoint(path, model, card)


# --------------------------------------------------------------------------- score


def test_score_writes_both_files_and_one_summary_line(capsys, slide, tmp_path):
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "score", slide, "--out", out, *FAST)
    assert rc == 0, err
    assert err == ""
    assert sorted(p.name for p in out.iterdir()) == ["mosaic.cells.geojson", "mosaic.geojson",
                                                     "mosaic.json"]
    lines = stdout.splitlines()
    match = SUMMARY.match(lines[0])
    assert match, lines[0]
    assert lines[1:] == [f"wrote {out / 'mosaic.geojson'}", f"wrote {out / 'mosaic.json'}",
                         f"wrote {out / 'mosaic.cells.geojson'}"]
    report = json.loads((out / "mosaic.json").read_text())
    assert match["name"] == "mosaic.tif"
    assert (match["score"], match["category"]) == (report["score"], report["category"])
    assert int(match["tiles"]) == report["n_scored_tiles"] > 0
    assert report["grid"]["tile_size"] == 64 and report["grid"]["target_mpp"] == 1.0
    geo = json.loads((out / "mosaic.geojson").read_text())
    assert len(geo["features"]) == report["n_scored_tiles"]


def test_score_organ_and_specimen(capsys, slide, tmp_path):
    rc, _, err = run(capsys, "score", slide, "--out", tmp_path, *FAST, "--organ", "gastric",
                     "--specimen", "biopsy")
    assert rc == 0, err
    report = json.loads((tmp_path / "mosaic.json").read_text())
    assert (report["params"]["call"]["organ"], report["params"]["call"]["specimen"]) == ("gastric", "biopsy")
    assert report["evidence"]["rule"]["organ"] == "gastric"


def test_mpp_option_scores_a_slide_without_mpp(capsys, no_mpp_slide, tmp_path):
    rc, _, err = run(capsys, "score", no_mpp_slide, "--out", tmp_path, *FAST)
    assert rc == 1
    assert_one_line_error(err, str(no_mpp_slide), "--mpp")
    assert not list(tmp_path.iterdir())

    rc, stdout, err = run(capsys, "score", no_mpp_slide, "--out", tmp_path, *FAST,
                          "--mpp", "0.5")
    assert rc == 0, err
    report = json.loads((tmp_path / "no-mpp.json").read_text())
    assert report["mpp"] == {"x": 0.5, "y": 0.5, "source": "user"}
    assert SUMMARY.match(stdout.splitlines()[0])


def test_mpp_option_overrides_the_file(capsys, slide, tmp_path):
    rc, _, err = run(capsys, "score", slide, "--out", tmp_path, *FAST, "--mpp", "0.25")
    assert rc == 0, err
    report = json.loads((tmp_path / "mosaic.json").read_text())
    assert report["mpp"]["x"] == 0.25 and report["mpp"]["source"] == "user"
    assert report["grid"]["tile_size0"] == [256.0, 256.0]  # 64 px at 1 µm/px of a 0.25 scan


def _missing(tmp, slide, no_mpp):
    path = tmp / "missing.svs"
    return ["score", path, "--out", tmp / "o"], [str(path)]


def _text_svs(tmp, slide, no_mpp):
    path = tmp / "notes.svs"
    path.write_text("not a slide\n")
    return ["score", path, "--out", tmp / "o"], [str(path)]


def _no_mpp(tmp, slide, no_mpp):
    return ["score", no_mpp, "--out", tmp / "o"], [str(no_mpp)]


def _out_is_a_file(tmp, slide, no_mpp):
    out = tmp / "taken"
    out.write_text("a file\n")
    return ["score", slide, "--out", out, *FAST], [str(out)]


def _unknown_model(tmp, slide, no_mpp):
    return ["score", slide, "--out", tmp / "o", "--model", "no-such-model"], ["no-such-model"]


def _architecture_without_weights(tmp, slide, no_mpp):
    return ["score", slide, "--out", tmp / "o", "--model", "resnet18"], ["resnet18"]


def _pickle_checkpoint(tmp, slide, no_mpp):
    path = tmp / "model.pt"
    path.write_bytes(pickle.dumps({"state_dict": {"w": [0.0, 1.0]}}))
    return ["score", slide, "--out", tmp / "o", "--model", path], [str(path), "pickle"]


BAD_INPUT = [_missing, _text_svs, _no_mpp, _out_is_a_file, _unknown_model,
             _architecture_without_weights, _pickle_checkpoint]


@pytest.mark.parametrize("case", BAD_INPUT, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_exits_1_with_one_line(capsys, tmp_path, slide, no_mpp_slide, case):
    argv, names = case(tmp_path, slide, no_mpp_slide)
    rc, stdout, err = run(capsys, *argv)
    assert rc == 1
    assert stdout == ""
    assert_one_line_error(err, *names)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


@pytest.mark.parametrize("argv", [
    ["score", "{slide}", "--tile-size", "abc"],
    ["score", "{slide}", "--target-mpp", "-1"],
    ["score", "{slide}", "--organ", "lung"],
    ["score"],
    ["score-all", "{slide}"],
], ids=["tile-size-abc", "negative-target-mpp", "unknown-organ", "no-slide", "no-such-command"])
def test_bad_usage_exits_2(capsys, slide, argv):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([a.format(slide=slide) for a in argv])
    _, err = capsys.readouterr()
    assert exit_.value.code == 2
    assert "usage: napari-her2" in err and "Traceback" not in err


def test_checkpoint_path_scores_and_reports_its_sha256(capsys, slide, tmp_path):
    ckpt = tmp_path / "tiny-her2.safetensors"
    card = small_checkpoint(ckpt)
    assert len(card.sha256) == 64
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "score", slide, "--model", ckpt, "--tile-size", "64",
                          "--out", out)
    assert rc == 0, err
    report = json.loads((out / "mosaic.json").read_text())
    assert report["model"]["sha256"] == card.sha256
    assert report["model"]["name"] == "her2-resnet"
    assert report["model"]["classes"] == list(HER2_SCORES)
    assert report["grid"]["target_mpp"] == 0.5  # the card's resolution
    assert report["grid"]["tile_size0"] == [64.0, 64.0]
    assert report["score"] in HER2_SCORES and SUMMARY.match(stdout.splitlines()[0])


def test_checkpoint_in_the_models_folder_is_listed_and_found_by_name(capsys, slide, tmp_path):
    folder = Path(os.environ["NAPARI_HER2_MODELS"])
    folder.mkdir()
    card = small_checkpoint(folder / "tiny-her2.safetensors")
    rc, stdout, _ = run(capsys, "models", "--json")
    assert rc == 0
    entries = {e["name"]: e for e in json.loads(stdout)}
    assert "tiny-her2" in entries
    assert entries["tiny-her2"]["card"]["sha256"] == card.sha256
    rc, _, err = run(capsys, "score", slide, "--model", "tiny-her2", "--tile-size", "64",
                     "--out", tmp_path / "out")
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / "mosaic.json").read_text())
    assert report["model"]["sha256"] == card.sha256


# --------------------------------------------------------------------------- models, demo


def test_models_lists_the_registry(capsys):
    rc, stdout, err = run(capsys, "models")
    assert rc == 0 and err == ""
    names = [line.split()[0] for line in stdout.splitlines() if line and not line[0].isspace()]
    assert names[:2] == ["dab-cells", "dab-membrane"]
    for name in ("her2-resnet", "repvgg-gct", "repvgg-se", "resnet18", "abmil"):
        assert name in names

    rc, stdout, _ = run(capsys, "models", "--json")
    assert rc == 0
    entries = json.loads(stdout)
    assert isinstance(entries, list)
    by_name = {e["name"]: e for e in entries}
    assert set(names) == set(by_name)
    dab = by_name["dab-membrane"]
    assert dab["card"]["classes"][:4] == list(HER2_SCORES)
    assert len(dab["card"]["sha256"]) == 64


def test_demo_headless_scores_the_sample_slide(capsys, tmp_path):
    out = tmp_path / "demo-out"
    rc, stdout, err = run(capsys, "demo", "--headless", "--out", out)
    assert rc == 0, err
    cache = Path(os.environ["NAPARI_HER2_CACHE"])
    assert (cache / "ihc-sample-v1.tif").is_file(), "sample built in $NAPARI_HER2_CACHE"
    assert sorted(p.name for p in out.iterdir()) == ["ihc-sample-v1.cells.geojson",
                                                     "ihc-sample-v1.geojson",
                                                     "ihc-sample-v1.json"]
    report = json.loads((out / "ihc-sample-v1.json").read_text())
    assert report["score"] in HER2_SCORES and report["n_scored_tiles"] > 0
    assert report["model"]["name"] == "dab-cells" and report["cells"]["n_tumour_cells"] > 0
    assert report["warnings"] == []  # the sample is DAB IHC
    assert any(SUMMARY.match(line) for line in stdout.splitlines())


# --------------------------------------------------------------------------- batch


def test_batch_reports_every_slide_and_goes_on_after_a_bad_one(capsys, slide, tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    shutil.copy(slide, cohort / "a.tif")
    shutil.copy(slide, cohort / "b.tif")
    bad = cohort / "broken.svs"
    bad.write_text("not a slide\n")
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "batch", cohort, "--out", out, "--workers", "1",
                          "--tile-size", "128")
    assert rc == 1
    assert "Traceback" not in err
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "b.json"]
    assert sorted(p.name for p in out.glob("*.geojson")) == ["a.cells.geojson", "a.geojson",
                                                              "b.cells.geojson", "b.geojson"]
    with open(out / "batch_summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert [r["status"] for r in rows].count("ok") == 2
    (error,) = [r for r in rows if r["status"] == "error"]
    assert error["slide"] == str(bad) and str(bad) in error["error"]
    assert f"napari-her2: error: {bad}" in err
    assert "2 of 3 slides scored" in stdout


# --------------------------------------------------------------------------- the executable


def _exe_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["NAPARI_HER2_MODELS"] = str(tmp_path / "user-models")
    env["NAPARI_HER2_CACHE"] = str(tmp_path / "cache")
    return env


def test_installed_executable_scores_and_fails_cleanly(slide, tmp_path):
    assert EXE.is_file(), f"{EXE} is not installed"
    out = tmp_path / "out"
    done = subprocess.run([str(EXE), "score", str(slide), "--out", str(out), *FAST],
                          capture_output=True, text=True, env=_exe_env(tmp_path), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert SUMMARY.match(done.stdout.splitlines()[0]), done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["mosaic.cells.geojson", "mosaic.geojson",
                                                     "mosaic.json"]

    text = tmp_path / "notes.svs"
    text.write_text("not a slide\n")
    done = subprocess.run([str(EXE), "score", str(text), "--out", str(out)],
                          capture_output=True, text=True, env=_exe_env(tmp_path), timeout=120)
    assert done.returncode == 1
    assert done.stdout == ""
    assert_one_line_error(done.stderr, str(text))


def test_score_csv_has_one_row_per_tile(capsys, slide, tmp_path):
    import csv

    assert main(["score", str(slide), "--out", str(tmp_path), "--csv"]) == 0
    report = json.loads((tmp_path / f"{slide.stem}.json").read_text())
    with open(tmp_path / f"{slide.stem}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == report["n_scored_tiles"] > 0
    assert {"row", "col", "x0", "y0", "x1", "y1"} <= set(rows[0])
    assert f"{slide.stem}.csv" in capsys.readouterr().out
