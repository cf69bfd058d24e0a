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


def _figure(pattern: str, out: str) -> float:
    """The number the first group of ``pattern`` captures in ``out`` (fails when absent)."""
    found = re.search(pattern, out, re.MULTILINE)
    assert found, f"no line matching {pattern!r} in:\n{out}"
    return float(found.group(1))


def test_bench_batch_smoke(capsys):
    pytest.importorskip("dask.distributed", reason="bench_batch runs on a dask cluster")
    bench_batch = _bench_module("bench_batch")

    assert bench_batch.main(["--slides", "2", "--mosaic", "1", "--in-process"]) == 0

    out = capsys.readouterr().out
    assert "2 slides (1x1 mosaic), dab-membrane, workers in-process" in out
    one = _figure(r"^1 worker : +(\d+\.\d\d) s +\d+\.\d\d slides/s$", out)
    two = _figure(r"^2 workers: +(\d+\.\d\d) s +\d+\.\d\d slides/s$", out)
    speedup = _figure(r"^speed-up 2 workers vs 1: (\d+\.\d\d)x \(ideal \dx\)$", out)
    assert one > 0 and two > 0
    assert speedup == pytest.approx(one / two, rel=0.1, abs=0.02)


def test_bench_export_smoke(capsys, tmp_path):
    bench_export = _bench_module("bench_export")

    assert bench_export.main(["--tiles", "500", "--out", str(tmp_path)]) == 0

    out = capsys.readouterr().out
    assert re.search(r"^tiles: 500  file: \d+\.\d MB  validator problems: 0$", out, re.MULTILINE)
    build = _figure(r"^build FeatureCollection: (\d+\.\d\d) s$", out)
    total = _figure(r"^export total \(build \+ write\): (\d+\.\d\d) s  target 5 s", out)
    ratio = _figure(r"  ratio (\d+\.\d\d) \((?:PASS|FAIL)\)$", out)
    assert 0 <= build <= total
    assert ratio == pytest.approx(total / bench_export.TARGET_S, abs=0.01)
    assert not list(tmp_path.iterdir()), "the temporary export folder is removed"


def test_bench_memory_smoke(capsys, tmp_path):
    bench_memory = _bench_module("bench_memory")

    assert bench_memory.main(["--side", "2048", "--folder", str(tmp_path)]) == 0

    out = capsys.readouterr().out
    assert (tmp_path / "big-2048.tif").is_file(), "the slide is built once in --folder"
    tiles = _figure(r"^slide: 2048 x 2048 px, (\d+) tissue tiles scored in", out)
    assert tiles > 0
    assert re.search(r"scored in \d+\.\d s \(score (0|1\+|2\+|3\+)\)$", out, re.MULTILINE)
    base = _figure(r"^baseline \(import \+ open\) peak RSS: (\d+\.\d\d) GiB$", out)
    peak = _figure(r"^score_slide peak RSS: +(\d+\.\d\d) GiB$", out)
    assert 0 < base <= peak < 2
    ratio = _figure(r"ratio score / 2 GiB target = (\d+\.\d\d) \(target < 1\)$", out)
    assert ratio == pytest.approx(peak / 2, abs=0.01)


def test_bench_pipeline_smoke(capsys):
    bench_pipeline = _bench_module("bench_pipeline")

    assert bench_pipeline.main(["--mosaic", "1", "--rounds", "1", "--usual-tiles", "4",
                                "--batch", "8"]) == 0

    out = capsys.readouterr().out
    tiles = _figure(r"^slide: bench-1x1-0\.5\.tif \d+x\d+ px; model dab-membrane; batch 8; "
                    r"(\d+) tissue tiles", out)
    assert tiles > 0
    pure = _figure(r"^pure model +(\d+\.\d) tiles/s", out)
    ours = _figure(r"^napari-her2 +(\d+\.\d) tiles/s", out)
    ratio = _figure(r"^ratio napari-her2 / pure model += (\d+\.\d\d) .*target >= 0\.85", out)
    assert pure > 0 and ours > 0
    assert ratio == pytest.approx(ours / pure, rel=0.05, abs=0.01)  # one round: its ratio
    mpx = _figure(r"^tissue throughput: napari-her2 (\d+\.\d\d) Mpx/s", out)
    assert mpx == pytest.approx(ours * 256**2 / 1e6, rel=0.02, abs=0.01)
    assert "bare forward" not in out  # a weight-free scorer has no network to time alone
    try:
        import openslide  # noqa: F401
    except ImportError:
        return  # the per-tile openslide script is the optional baseline
    usual = _figure(r"^usual script +(\d+\.\d) tiles/s", out)
    vs_usual = _figure(r"^ratio napari-her2 / usual script = (\d+\.\d\d)  \(target >= 3\)$", out)
    assert vs_usual == pytest.approx(ours / usual, rel=0.05, abs=0.01)


def test_bench_pipeline_splits_the_cell_scorers_time(capsys):
    bench_pipeline = _bench_module("bench_pipeline")

    assert bench_pipeline.main(["--mosaic", "1", "--rounds", "1", "--usual-tiles", "2",
                                "--batch", "8", "--model", "dab-cells"]) == 0

    out = capsys.readouterr().out
    assert re.search(r"^cell scorer, seconds per tile: read \(threads, overlapped\) [\d.]+ ms, "
                     r"waiting for reads [\d.]+ ms, scorer [\d.]+ ms$", out, re.MULTILINE), out
    measure = _figure(r"measure [\d.]+ ms \((\d+\.\d)%\)", out)
    classify = _figure(r"classify [\d.]+ ms \((\d+\.\d)%\)", out)
    assert measure + classify == pytest.approx(100, abs=0.2) and measure > classify


def test_bench_reparam_smoke(capsys):
    bench_reparam = _bench_module("bench_reparam")

    assert bench_reparam.main(["--arch", "repvgg-gct", "--batch", "2", "--size", "64",
                               "--warmup", "1", "--repeats", "1"]) == 0

    out = capsys.readouterr().out
    assert re.search(r"^repvgg-gct  \(batch 2 x 3 x 64 x 64\)$", out, re.MULTILINE), out
    train_m = _figure(r"params \(M\) +train +(\d+\.\d{3})", out)
    deploy_m = _figure(r"params \(M\) +train +\d+\.\d{3} +deploy +(\d+\.\d{3})", out)
    assert train_m == pytest.approx(7.849, abs=0.002)  # the paper's RepVGG-GCT
    assert deploy_m < train_m
    train_ms = _figure(r"time/batch +train +(\d+\.\d) ms", out)
    deploy_ms = _figure(r"time/batch +train +\d+\.\d ms +deploy +(\d+\.\d) ms", out)
    speed = _figure(r"speed ratio  deploy vs train: (\d+\.\d\d)x   \(target >= 1\.5x\)", out)
    assert speed == pytest.approx(train_ms / deploy_ms, rel=0.05)
    assert _figure(r"max \|logit difference\| (\d\.\d\de[-+]\d\d)", out) < 1e-3


def test_bench_review_smoke(capsys, qapp):
    # qapp: the test session's QApplication exists before the script would create its own
    bench_review = _bench_module("bench_review")

    assert bench_review.main(["--tiles", "2000"]) == 0

    out = capsys.readouterr().out
    queue = _figure(r"^machine: .*, 2000 tiles, queue of (\d+)$", out)
    assert 0 < queue <= 2000
    for step in ("rank 2,000 tiles", "fill list view", "rescore one edit"):
        pattern = rf"^ *{re.escape(step)}: +(\d+\.\d) ms  ratio to the 100 ms budget +(\d+\.\d\d)$"
        row = re.search(pattern, out, re.MULTILINE)
        assert row, f"no row for {step!r} in:\n{out}"
        ms, ratio = float(row.group(1)), float(row.group(2))
        assert ratio == pytest.approx(ms / 100, abs=0.01)


def test_bench_train_smoke(capsys):
    pytest.importorskip("her2_train", reason="bench_train times the her2-train package's loop")
    bench_train = _bench_module("bench_train")

    assert bench_train.main(["--steps", "2", "--batch", "8", "--repeats", "1"]) == 0

    out = capsys.readouterr().out
    assert "her2-resnet, 64 px, batch 8, 2 steps x 1 repeats (median)" in out
    full = _figure(r"her2-train loop \(sampling \+ augmentation \+ step\): +(\d+\.\d) tiles/s", out)
    bare = _figure(r"bare forward\+backward\+step, same threads: +(\d+\.\d) tiles/s", out)
    assert full > 0 and bare > 0
    ratio = _figure(r"ratio full / bare: (\d+\.\d\d)x \(target >= 0\.8x\)$", out)
    assert ratio == pytest.approx(full / bare, rel=0.05, abs=0.01)


def test_bench_ui_smoke(capsys, qapp, viewer_widget):
    # the script's own viewer is napari.Viewer(show=True); here pytest-qt's viewer (the
    # widget tests' fixture, a small slide) is driven by the same measuring function
    bench_ui = _bench_module("bench_ui")
    _, widget = viewer_widget

    figures = bench_ui.measure(widget, qapp, idle_s=0.3, settle_s=0.2, timeout_s=60)
    bench_ui.print_figures(figures, "ihc-small.tif")

    assert widget.report is not None and figures.tiles == len(widget.report.results) > 0
    assert 0 < figures.first_overlay_s <= figures.total_s < 60
    assert 0 < figures.click_s < figures.total_s
    assert figures.idle_gap_s > 0 and figures.scoring_gap_s > 0 and figures.finishing_gap_s > 0
    out = capsys.readouterr().out
    assert re.search(rf"slide ihc-small\.tif; {figures.tiles} tiles scored in \d+\.\d s$", out,
                     re.MULTILINE)
    assert re.search(r"^first tile overlay after Score: \d+\.\d\d s \(target < 2 s\)$", out,
                     re.MULTILINE)
    assert re.search(r"^longest event-loop gap: idle \d+ ms, while scoring \d+ ms "
                     r"\(target < 100 ms\); ratio scoring / idle = \d+\.\d\d$", out, re.MULTILINE)
    assert re.search(r"^after the last tile \(the call shown, the cells layer added\): longest "
                     r"gap \d+ ms$", out, re.MULTILINE)


def test_bench_cells_smoke(capsys):
    bench_cells = _bench_module("bench_cells")

    assert bench_cells.main(["--side", "512", "--tile", "128", "--repeats", "1",
                             "--no-shared"]) == 0

    out = capsys.readouterr().out
    assert re.search(r"^batch: 16 tiles of 128x128 px \(0\.3 Mpx at 0\.5 um/px\)", out,
                     re.MULTILINE), out
    rates = {}
    for name in ("deconvolve (bare)", "membrane.measure", "measure_cells, 1 thread",
                 "measure_cells, 2 threads", "in context, 2 threads"):
        rates[name] = _figure(rf"^{re.escape(name)} +(\d+\.\d\d) Mpx/s", out)
        assert rates[name] > 0
    ratio = _figure(r"^ratio measure_cells \(1 thread\) / membrane\.measure: (\d+\.\d\d)$", out)
    assert ratio == pytest.approx(
        rates["measure_cells, 1 thread"] / rates["membrane.measure"], rel=0.05, abs=0.01)
    assert re.search(r"^cells: \d+, tumour cells \d+; context 98 px \(49 um\)", out, re.MULTILINE)
    in_context = _figure(r"^ratio in context / bare tiles \(2 threads\): (\d+\.\d\d) ", out)
    assert in_context == pytest.approx(
        rates["in context, 2 threads"] / rates["measure_cells, 2 threads"], rel=0.05, abs=0.01)
    target = _figure(r"^target: measure_cells in context >= 3\.0 Mpx/s on 2 cores: "
                     r"(?:met|not met) \(ratio (\d+\.\d\d)\)$", out)
    assert target == pytest.approx(rates["in context, 2 threads"] / 3.0, rel=0.05, abs=0.01)


def test_bench_pipeline_times_a_cnn_against_its_bare_forward(capsys):
    bench_pipeline = _bench_module("bench_pipeline")

    assert bench_pipeline.main(["--model", "her2-resnet", "--mosaic", "1", "--rounds", "1",
                                "--usual-tiles", "2", "--batch", "8"]) == 0
    out = capsys.readouterr().out
    ours = _figure(r"^napari-her2 +(\d+\.\d) tiles/s", out)
    bare = _figure(r"^bare forward +(\d+\.\d) tiles/s", out)
    ratio = _figure(r"^ratio napari-her2 / bare forward = (\d+\.\d\d)  \(median of the rounds' "
                    r"ratios; target >= 0\.85\)$", out)
    assert bare > 0 and ratio == pytest.approx(ours / bare, rel=0.05, abs=0.01)  # one round
