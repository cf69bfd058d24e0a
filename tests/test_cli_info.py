"""`napari-her2 info`: exit 0 and the slide's description; bad input: exit 1, one stderr line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from napari_her2.cli import main

REAL_FILES = ("cmu-1-small-region.svs", "test3-DAPI-2-387.ndpi", "cmu-1-small-region-dicom",
              "kidney-48-5.tif", "small.svs", "boxes.tiff")


def run_info(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["info", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, path: Path) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    assert "Traceback" not in err


def test_info_text(capsys, generic_pyramid_tiff):
    code, out, err = run_info(capsys, generic_pyramid_tiff)
    assert code == 0, err
    assert f"file:          {generic_pyramid_tiff}" in out
    assert "vendor:        generic-tiff" in out
    assert "0.2500 x 0.2500 µm/px (tiff.resolution)" in out
    assert "  0: 1536 x 1024 px  downsample 1 x 1" in out
    assert "  2: 384 x 256 px  downsample 4 x 4" in out


def test_info_json(capsys, svs_jp2k_rgb):
    code, out, _ = run_info(capsys, svs_jp2k_rgb, "--json")
    assert code == 0
    info = json.loads(out)
    assert info["vendor"] == "aperio"
    assert info["mpp"] == {"x": 0.25, "y": 0.25} and info["mpp_source"] == "aperio.MPP"
    assert info["magnification"] == 20.0
    assert info["compression"] == "APERIO_JP2000_RGB"
    assert [lvl["shape"] for lvl in info["levels"]] == [[1024, 1536], [512, 768]]
    assert [lvl["downsample"] for lvl in info["levels"]] == [[1.0, 1.0], [2.0, 2.0]]
    assert set(info["associated"]) == {"label", "macro", "thumbnail"}


def test_info_without_mpp_says_so_and_accepts_one(capsys, strip_tiff):
    code, out, _ = run_info(capsys, strip_tiff)
    assert code == 0
    assert "mpp:           unknown" in out and "--mpp" in out
    code, out, _ = run_info(capsys, strip_tiff, "--mpp", "0.5", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["mpp"] == {"x": 0.5, "y": 0.5} and info["mpp_source"] == "user"


def test_implausible_mpp_is_a_usage_error(capsys, strip_tiff):
    with pytest.raises(SystemExit) as info:
        main(["info", str(strip_tiff), "--mpp", "1000"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "slide mpp must be 0.02-50 µm/px" in err


@pytest.mark.parametrize("value", ["-1", "0", "abc"])
def test_bad_mpp_value_is_a_usage_error(capsys, strip_tiff, value):
    with pytest.raises(SystemExit) as info:
        main(["info", str(strip_tiff), "--mpp", value])
    assert info.value.code == 2
    assert "--mpp" in capsys.readouterr().err


def test_bad_input(capsys, bad_input):
    code, out, err = run_info(capsys, bad_input)
    assert code == 1
    assert out == ""
    assert_one_line_error(err, bad_input)
    assert err.startswith("napari-her2: error: ")


@pytest.mark.parametrize("name", REAL_FILES)
def test_info_on_real_files(capsys, shared_slides, name):
    code, out, err = run_info(capsys, shared_slides / name, "--json")
    assert code == 0, err
    assert json.loads(out)["file"] == str(shared_slides / name)


@pytest.mark.parametrize("length", [100, 1_400_000])
def test_truncated_real_svs(capsys, shared_slides, tmp_path, length):
    cut = tmp_path / "cut.svs"
    cut.write_bytes((shared_slides / "cmu-1-small-region.svs").read_bytes()[:length])
    code, out, err = run_info(capsys, cut)
    assert code == 1 and out == ""
    assert_one_line_error(err, cut)


# --------------------------------------------------------------------------- installed command


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("napari-her2")
    if not script.exists():
        pytest.skip(f"the napari-her2 command is not installed next to {sys.executable}")
    return [str(script)]


def run_command(command: list[str], *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run([*command, "info", *map(str, args)], capture_output=True, text=True,
                          timeout=60, env=env)


def test_installed_command_succeeds(generic_pyramid_tiff):
    proc = run_command(console_script(), generic_pyramid_tiff, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["vendor"] == "generic-tiff"


def test_installed_command_bad_input(tmp_path):
    path = tmp_path / "notes.svs"
    path.write_text("not a slide")
    proc = run_command(console_script(), path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert_one_line_error(proc.stderr, path)


def test_module_bad_input_truncated_tiff(tmp_path, generic_pyramid_tiff):
    cut = tmp_path / "cut.tif"
    data = generic_pyramid_tiff.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    proc = run_command([sys.executable, "-m", "napari_her2.cli"], cut)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, cut)
