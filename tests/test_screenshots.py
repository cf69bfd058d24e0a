"""docs/make_screenshots.py still makes its pictures (small and quick; pixels not compared)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PICTURES = ["open-slide", "scored", "score-panel", "cells", "review", "region", "attention",
            "gradcam", "tma"]


@pytest.mark.slow
def test_the_screenshot_tour_runs(tmp_path):
    """The tour in a real napari viewer on the display the suite runs under (Xvfb)."""
    if not os.environ.get("DISPLAY"):
        pytest.skip("no display (the suite runs under pytest-xvfb)")
    env = {**os.environ, "NAPARI_HER2_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "make_screenshots.py"),
                          "--smoke", str(tmp_path / "shots")], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    wanted = PICTURES + (["report"] if shutil.which("pdftoppm") else [])
    for name in wanted:
        png = tmp_path / "shots" / f"{name}.png"
        assert png.is_file(), f"{name}.png was not made"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert 2_000 < png.stat().st_size <= 200_000, name


def test_the_committed_pictures_are_small_pngs():
    pictures = sorted((ROOT / "docs" / "images").glob("*.png"))
    assert {p.stem for p in pictures} >= set(PICTURES) | {"report"}
    for png in pictures:
        assert png.stat().st_size <= 200_000, png.name
