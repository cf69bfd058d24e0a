"""Smoke tests of the benchmark scripts: each runs end to end on a tiny input in seconds."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _bench_module(name: str):
    """Import ``benchmarks/<name>.py`` (the folder is not a package)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def test_bench_view_smoke(capsys, tmp_path):
    pytest.importorskip("napari_wsi", reason="napari-wsi is not installed: nothing to compare with")
    pytest.importorskip("openslide", reason="openslide is needed by napari-wsi's reader")
    bench_view = _bench_module("bench_view")

    assert bench_view.main(["--size", "4096", "--steps", "6", "--canvas", "640x360",
                            "--workdir", str(tmp_path)]) == 0

    out = capsys.readouterr().out
    for reader in ("ours", "napari-wsi"):
        row = re.search(rf"^{reader}\s+(\d+\.\d) /\s+(\d+\.\d)", out, re.MULTILINE)
        assert row, f"no median / p95 row for {reader} in:\n{out}"
        assert 0 < float(row.group(1)) <= float(row.group(2))
    assert re.search(r"ratio ours / napari-wsi: median \d+\.\d\dx, p95 \d+\.\d\dx", out)
    target = r"^target: ours <= theirs \(median and p95\): (met|not met)$"
    assert re.search(target, out, re.MULTILINE)
    assert "views: 7 " in out  # the home view and 6 steps
    assert list(tmp_path.glob("*.svs")), "the slide is kept in --workdir"


def test_bench_read_smoke(capsys):
    pytest.importorskip("openslide", reason="openslide is the baseline of bench_read")
    bench_read = _bench_module("bench_read")

    assert bench_read.main(["--quick"]) == 0

    out = capsys.readouterr().out
    jpeg = re.search(r"^synthetic 1024px JPEG +0 +1024x1024 +256x256 +([\d. ]+)$", out,
                     re.MULTILINE)
    assert jpeg, f"no rates for the JPEG slide in:\n{out}"
    rates = [float(v) for v in jpeg.group(1).split()]
    assert len(rates) == 9 and min(rates) > 0  # bare, ours, openslide and tiffslide rates
    ratios = re.search(r"^synthetic 1024px JPEG +([\d.]+)x +([\d.]+)x +([\d.]+)x +([\d.]+)x",
                       out, re.MULTILINE)
    assert ratios, out
    assert re.search(r"^synthetic 512px JPEG 2000 \(tiny\)", out, re.MULTILINE)
    assert "targets: ours1/bare1 >= 0.8" in out
