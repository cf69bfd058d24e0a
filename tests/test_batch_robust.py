"""Batch and CLI robustness: any error or hang in one slide is one summary row, the summary is
always written, output names are unique and valid, FIFOs never block, stale temporaries of a
killed run are swept, and dask's INFO chatter stays out of the way."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from napari_her2._sample_data import ihc_mosaic
from napari_her2.cli import main
from napari_her2.cohort import batch
from napari_her2.export.atomic import (
    MAX_STEM_BYTES,
    atomic_write,
    is_own_temp,
    safe_stem,
    sweep_stale_temps,
)
from napari_her2.params import ScoringParams
from napari_her2.slide import write_pyramid_tiff

EXE = Path(sys.executable).parent / "napari-her2"
FAST = ["--tile-size", "64", "--target-mpp", "2.0"]
PARAMS = ScoringParams().with_overrides(tile_size=64, target_mpp=2.0, workers=1).to_dict()


pytestmark = pytest.mark.usefixtures("isolated_env")


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("robust") / "mosaic.tif"
    return write_pyramid_tiff(path, ihc_mosaic(rows=1, cols=1, gap=32), 0.5)


def call_within(seconds: float, fn, *args):
    """fn(*args) in a thread; fails the test (instead of hanging it) past ``seconds``."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as err:  # noqa: BLE001 - re-raised below
            box["error"] = err

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn.__name__} still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


# --------------------------------------------------------------------------- one slide


def test_any_exception_in_one_slide_becomes_an_error_row(monkeypatch, slide, tmp_path):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("float division by zero\nsecond line")

    monkeypatch.setattr("napari_her2.run.pipeline.score_slide", broken)
    row = batch.score_one(str(slide), str(tmp_path), PARAMS)
    assert row["status"] == "error"
    assert row["error"] == f"{slide}: ZeroDivisionError: float division by zero"


def test_a_slide_past_its_time_limit_is_reported_and_asked_to_stop(monkeypatch, slide, tmp_path):
    seen = {}

    def slow(*args, cancel=None, **kwargs):
        seen["cancel"] = cancel
        cancel.wait(30)
        raise RuntimeError("cancelled")

    monkeypatch.setattr("napari_her2.run.pipeline.score_slide", slow)
    t0 = time.perf_counter()
    row = batch.score_one(str(slide), str(tmp_path), PARAMS, timeout=0.5)
    assert time.perf_counter() - t0 < 5
    assert row["status"] == "error" and "time limit" in row["error"] and str(slide) in row["error"]
    assert seen["cancel"].is_set()


def test_summary_is_written_when_a_task_fails_on_the_cluster(monkeypatch, slide, tmp_path):
    from dask.distributed import LocalCluster

    real = batch.score_one

    def flaky(path, *args):
        if path.endswith("b.tif"):
            raise MemoryError("worker ran out of memory")
        return real(path, *args)

    monkeypatch.setattr(batch, "score_one", flaky)
    paths = [tmp_path / "a.tif", tmp_path / "b.tif"]
    for p in paths:
        p.write_bytes(slide.read_bytes())
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        rows = batch.score_cohort(paths, tmp_path / "out", params=ScoringParams.from_dict(PARAMS),
                                  scheduler=cluster.scheduler_address)
    assert [r["status"] for r in rows] == ["ok", "error"]
    assert "MemoryError: worker ran out of memory" in rows[1]["error"]
    with open(tmp_path / "out" / batch.SUMMARY_NAME, newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok", "error"]


def test_summary_is_written_when_the_cluster_cannot_be_reached(slide, tmp_path):
    import dask

    out = tmp_path / "out"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        rows = batch.score_cohort([slide], out, scheduler="tcp://127.0.0.1:9")
    assert rows[0]["status"] == "error" and "cluster failed" in rows[0]["error"]
    with open(out / batch.SUMMARY_NAME, newline="") as f:
        assert [r["slide"] for r in csv.DictReader(f)] == [str(slide)]


# --------------------------------------------------------------------------- names


def test_output_stems_are_unique_and_deterministic():
    paths = ["a/slide.svs", "b/slide.svs", "b/slide.ndpi", "c/other.tif", "d/SLIDE.tif"]
    stems = batch.output_stems(paths)
    assert len({s.casefold() for s in stems}) == len(stems)
    assert stems[3] == "other"
    assert stems == batch.output_stems(paths)
    assert batch.output_stems(["x/slide.svs", "x/slide.ndpi"]) == ["slide-svs", "slide-ndpi"]
    assert batch.output_stems(["a/slide.svs", "b/slide.svs"]) == ["slide-a", "slide-b"]
    # a renamed stem that meets an existing one, and the very same path twice
    assert len(set(batch.output_stems(["slide-a.tif", "a/slide.svs", "b/slide.svs"]))) == 3
    assert len(set(batch.output_stems(["a/s.tif", "a/s.tif"]))) == 2


def test_safe_stem_keeps_names_valid_and_distinct():
    long_a, long_b = "x" * 250 + "a", "x" * 250 + "b"
    a, b = safe_stem(long_a), safe_stem(long_b)
    assert a != b and len(a.encode()) <= MAX_STEM_BYTES
    assert safe_stem("é" * 200).encode().decode() == safe_stem("é" * 200)  # valid UTF-8
    assert len(safe_stem("é" * 200).encode()) <= MAX_STEM_BYTES
    assert safe_stem("a/b\\c\x00") == "a_b_c_" and safe_stem("..") == "slide"
    assert safe_stem("plain") == "plain"


# --------------------------------------------------------------------------- temporaries


def test_temp_names_are_short_for_a_long_target(tmp_path):
    target = tmp_path / ("y" * 250 + ".json")
    seen = []
    with atomic_write(target) as f:
        seen.extend(os.listdir(tmp_path))
        f.write("{}")
    assert len(seen) == 1 and len(seen[0]) < 40 and is_own_temp(seen[0])
    assert target.read_text() == "{}"


def test_sweep_removes_only_our_stale_temporaries(tmp_path):
    old = time.time() - 3600
    stale = [tmp_path / ".nh2-abc123.tmp", tmp_path / ".mosaic.geojson.k2j4h5g6.tmp"]
    keep = [tmp_path / ".nh2-fresh.tmp", tmp_path / ".someone-else.tmp", tmp_path / "a.json"]
    for p in stale + keep:
        p.write_text("x")
    for p in stale + keep[1:]:
        os.utime(p, (old, old))
    assert sorted(sweep_stale_temps(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)
    assert sweep_stale_temps(tmp_path / "missing") == []


def test_score_sweeps_stale_temps_and_writes_a_250_char_slide_name(capsys, slide, tmp_path):
    long = tmp_path / ("s" * 250 + ".tif")
    long.write_bytes(slide.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".nh2-killed.tmp"
    stale.write_text("{")
    os.utime(stale, (time.time() - 3600,) * 2)
    assert main(["score", str(long), "--out", str(out), *FAST]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 3, names  # tiles, cells and the report
    assert all(len(n.encode()) <= 255 for n in names)
    assert all(n.startswith("s" * 100) for n in names)
    assert sorted(Path(n).suffix for n in names) == [".geojson", ".geojson", ".json"]
    assert any(n.endswith(".cells.geojson") for n in names)
    assert "Traceback" not in capsys.readouterr().err


# --------------------------------------------------------------------------- FIFOs


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.svs"
    os.mkfifo(path)
    yield path
    # unblock anything that still waits on it, so a failing test cannot hang the run
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    os.close(fd)


@pytest.mark.parametrize("command", ["info", "score"])
def test_a_fifo_is_refused_in_seconds(capsys, fifo, tmp_path, command):
    extra = ["--out", str(tmp_path / "out")] if command == "score" else []
    rc = call_within(20, main, [command, str(fifo), *extra])
    err = capsys.readouterr().err
    assert rc == 1 and "not a regular file" in err and str(fifo) in err


# --------------------------------------------------------------------------- end to end


def test_batch_end_to_end_names_fifo_errors_and_quiet_logs(slide, fifo, tmp_path):
    for folder, name in [("a", "slide.tif"), ("b", "slide.tif"), ("b", "slide.tiff")]:
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_bytes(slide.read_bytes())
    inputs = [tmp_path / "a/slide.tif", tmp_path / "b/slide.tif", tmp_path / "b/slide.tiff", fifo]
    out = tmp_path / "out"
    env = dict(os.environ, NAPARI_HER2_MODELS=str(tmp_path / "m"),
               NAPARI_HER2_CACHE=str(tmp_path / "c"))
    done = subprocess.run([str(EXE), "batch", *map(str, inputs), "--out", str(out),
                           "--workers", "1", "--timeout", "120", *FAST],
                          capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert " INFO " not in done.stderr and "distributed." not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()  # the one error, not buried in log lines
    assert line.startswith(f"napari-her2: error: {fifo}: not a regular file"), line
    with open(out / batch.SUMMARY_NAME, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["slide"] for r in rows] == [str(p) for p in inputs]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "error"]
    reports = [r["report"] for r in rows[:3]]
    assert len(set(reports)) == 3 and all(Path(r).is_file() for r in reports)
    import json

    for row in rows[:3]:  # each summary row points to its own slide's outputs
        assert json.loads(Path(row["report"]).read_text())["slide"] == row["slide"]
        assert Path(row["geojson"]).is_file()


def test_summary_columns_say_why_there_is_no_call_and_count_tumour_cells():
    no_call = {"score": None, "category": None, "confidence": None, "borderline": None,
               "no_call": "no tumour found", "n_tissue_tiles": 12,
               "cells": {"n_tumour_cells": 19, "tumour_percent": {}}}
    row = batch.call_columns(no_call)
    assert row["no_call"] == "no tumour found" and row["n_tumour_cells"] == 19
    assert row["tumour_pct_3+"] is None
    tile_model = {"score": "2+", "category": "equivocal", "confidence": 0.8,
                  "borderline": None, "no_call": None, "n_tissue_tiles": 40, "cells": None}
    row = batch.call_columns(tile_model)
    assert row["score"] == "2+" and row["n_tumour_cells"] is None
    assert set(batch.SUMMARY_FIELDS) >= set(row)
