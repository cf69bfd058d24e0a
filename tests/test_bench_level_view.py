"""Smoke runs of bench_level and bench_napari_view: each runs end to end on a small mosaic and
prints its ratios (no timing is asserted: the machine's load decides those)."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RATIO = r"(\d+\.\d\d)x"
SPREAD = r"\[\d+\.\d\d-\d+\.\d\d\]"  # min-max over runs


def _bench_module(name: str):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def test_bench_level_smoke(capsys):
    pytest.importorskip("imagecodecs")
    bench_level = _bench_module("bench_level")

    assert bench_level.main(["--quick"]) == 0

    out = capsys.readouterr().out
    mosaic = re.search(r"^mosaic of .*, level 0, 256 px JPEG tiles: 2048 x 2048 px .*"
                       r"pixels: identical", out, re.MULTILINE)
    assert mosaic, f"no mosaic block (or its pixels differ) in:\n{out}"
    for name in ("bare 1", "bare 2", "ours 1", "ours 2", "bare+out 1", "bare+out 2"):
        assert re.search(rf"^  {re.escape(name)} +\d+\.\d ms", out, re.MULTILINE), name
    for ratio in ("ours 1 / bare 1", "ours 2 / bare 2"):
        found = re.search(rf"^  {ratio}: {RATIO} \[.*target >= 0.9: (met|not met)$", out,
                          re.MULTILINE)
        assert found and float(found.group(1)) > 0, ratio
    if bench_level.NDPI.is_file():
        assert re.search(r"^test3-DAPI-2-387.ndpi, level 1, 8-row restart intervals: .*"
                         r"pixels: identical", out, re.MULTILINE), out
        if "openslide 1" in out:
            assert re.search(rf"^  ours 2 / openslide 1: {RATIO} .*target >= 2.0", out,
                             re.MULTILINE), out
    else:
        assert "NDPI: " in out and "skipped" in out
    assert re.search(r"^targets: (all met|not met: .+)$", out, re.MULTILINE)


def test_bench_napari_view_smoke(capsys, tmp_path):
    pytest.importorskip("napari", reason="the benchmark drives napari's own fetch functions")
    bench_view = _bench_module("bench_napari_view")

    assert bench_view.main(["--quick", "--workdir", str(tmp_path)]) == 0

    out = capsys.readouterr().out
    for reader in ("ours", "in-RAM", "bare"):
        row = re.search(rf"^{re.escape(reader)} +1 +[\d.]+ +([\d.]+) +[\d.]+ +([\d.]+) ", out,
                        re.MULTILINE)
        assert row, f"no row for {reader} in:\n{out}"
        assert float(row.group(1)) > 0 and float(row.group(2)) > 0
    for other in ("in-RAM", "bare"):
        assert re.search(rf"^ours / {other}: cold median {RATIO} {SPREAD}, p95 {RATIO} "
                         rf"{SPREAD}; warm median {RATIO} {SPREAD}", out, re.MULTILINE), other
    if "napari-wsi " in out.split("reader", 1)[-1]:
        assert re.search(rf"^ours / napari-wsi: cold median {RATIO}.*targets <= 0.5", out,
                         re.MULTILINE)
    assert re.search(r"^targets: ", out, re.MULTILINE)
    assert list(tmp_path.glob("bci-mosaic-*.tif")), "the mosaic is kept in --workdir"
