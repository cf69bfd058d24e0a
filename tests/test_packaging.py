"""The wheel ships the npe2 manifest inside the package, so napari finds the plugin."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_the_manifest_and_entry_point(tmp_path):
    pytest.importorskip("hatchling")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = tmp_path.glob("napari_her2-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        manifest = zf.read("napari_her2/napari.yaml").decode()
        entry = next(n for n in zf.namelist() if n.endswith("entry_points.txt"))
        entry_points = zf.read(entry).decode()
        shipped = {n.rsplit("/", 1)[-1] for n in zf.namelist()
                   if n.startswith("napari_her2/models/checkpoints/")}
        assert "napari_her2/py.typed" in zf.namelist()
    assert {"her2-resnet-tma.safetensors", "abmil-tma.safetensors",
            "whspn-mlp-tma.safetensors"} <= shipped
    assert manifest == (ROOT / "napari.yaml").read_text()
    assert "napari-her2 = napari_her2:napari.yaml" in entry_points
    assert "napari-her2 = napari_her2.cli:main" in entry_points


def test_no_qt_outside_the_qt_package():
    """Qt stays at the edge: only napari_her2/_qt imports Qt bindings or qtpy."""
    src = ROOT / "src" / "napari_her2"
    offenders = []
    for path in src.rglob("*.py"):
        if "_qt" in path.relative_to(src).parts:
            continue
        text = path.read_text()
        for word in ("import qtpy", "from qtpy", "PyQt5", "PyQt6", "PySide", "superqt"):
            if word in text:
                offenders.append(f"{path.relative_to(src)}: {word}")
    assert not offenders


def test_core_modules_import_without_qt():
    """Every module outside _qt imports in a process where Qt bindings cannot load."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'qtpy'):\n"
        "            raise ImportError('Qt blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import napari_her2, napari_her2.cli, napari_her2.run.pipeline, napari_her2.cohort.batch\n"
        "import napari_her2.models, napari_her2.export, napari_her2.ihc.scorer\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
