"""``batch`` on a real dask cluster: a scheduler and two worker processes started here on
localhost; ``--resume`` skips slides whose complete outputs exist; a worker killed under a
slide gets one retry, then the slide is an error row."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from napari_her2._sample_data import ihc_mosaic
from napari_her2.cli import main
from napari_her2.cohort import batch
from napari_her2.params import ScoringParams
from napari_her2.slide import write_pyramid_tiff

FAST = ["--tile-size", "64", "--target-mpp", "2.0"]
PARAMS = ScoringParams().with_overrides(tile_size=64, target_mpp=2.0, workers=1)
#: how long the cluster may take to come up (two worker processes importing dask)
START_S = 30.0


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "mosaic.tif"
    return write_pyramid_tiff(path, ihc_mosaic(rows=1, cols=1, gap=32), 0.5)


@pytest.fixture
def cohort(slide, tmp_path) -> list[Path]:
    folder = tmp_path / "cohort"
    folder.mkdir()
    paths = [folder / f"{name}.tif" for name in ("a", "b", "c")]
    for p in paths:
        shutil.copy(slide, p)
    return paths


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _stop(procs: list[subprocess.Popen]) -> None:
    """Terminate each process group (a worker's nanny and its worker process), wait a
    bounded time, then kill what is left."""
    for p in procs:
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + 3
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(p, signal.SIGKILL)
        p.wait(5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[str]:
    """The address of a ``dask scheduler`` with two ``dask worker`` processes (one thread
    each, with their nannies), all killed at the end."""
    from dask.distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    sched_file = folder / "scheduler.json"
    cli = [sys.executable, "-m"]
    procs: list[subprocess.Popen] = []
    logs = [open(folder / f"{name}.log", "w") for name in ("scheduler", "w1", "w2")]  # noqa: SIM115
    try:
        procs.append(subprocess.Popen(
            [*cli, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(sched_file)],
            stdout=logs[0], stderr=subprocess.STDOUT, start_new_session=True))
        for log in logs[1:]:
            procs.append(subprocess.Popen(
                [*cli, "distributed.cli.dask_worker", "--scheduler-file", str(sched_file),
                 "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
                 "--death-timeout", "60"],
                stdout=log, stderr=subprocess.STDOUT, cwd=folder,
                start_new_session=True))
        deadline = time.monotonic() + START_S
        while not sched_file.exists() and time.monotonic() < deadline:
            assert procs[0].poll() is None, (folder / "scheduler.log").read_text()
            time.sleep(0.1)
        with Client(scheduler_file=str(sched_file), timeout=START_S) as client:
            client.wait_for_workers(2, timeout=max(1.0, deadline - time.monotonic()))
            address = client.scheduler.address
        yield address
    finally:
        _stop(procs)
        for log in logs:
            log.close()


def _summary(out: Path) -> list[dict[str, str]]:
    with open(out / batch.SUMMARY_NAME, newline="") as f:
        return list(csv.DictReader(f))


def _comparable(report_path: Path) -> dict:
    """A report without what differs between two runs of the same slide (timings) or
    between ``score`` and ``batch`` (batch reads with one thread per slide)."""
    report = json.loads(report_path.read_text())
    report.pop("timings")
    report["params"]["model"].pop("workers")
    return report


def _tiles(path: Path) -> list[dict]:
    """The tile features of a GeoJSON without their ids (derived from the output name)."""
    features = json.loads(path.read_text())["features"]
    return [{k: v for k, v in f.items() if k != "id"} for f in features]


def test_batch_on_a_real_cluster_matches_score(cluster, cohort, tmp_path, capsys):
    ref = tmp_path / "ref"
    assert main(["score", str(cohort[0]), "--out", str(ref), *FAST]) == 0
    out = tmp_path / "out"
    rc = main(["batch", str(cohort[0].parent), "--out", str(out), "--scheduler", cluster, *FAST])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert "3 of 3 slides scored" in stdout
    rows = _summary(out)
    assert [(Path(r["slide"]).name, r["status"]) for r in rows] == [
        ("a.tif", "ok"), ("b.tif", "ok"), ("c.tif", "ok")]
    expected = _comparable(ref / "a.json")
    for p in cohort:
        got = _comparable(out / f"{p.stem}.json")
        assert got.pop("slide") == str(p)
        assert got == {k: v for k, v in expected.items() if k != "slide"}
        assert _tiles(out / f"{p.stem}.geojson") == _tiles(ref / "a.geojson")
    assert (out / "a.geojson").read_text() == (ref / "a.geojson").read_text()
    assert not list(out.glob(".nh2-*"))  # no start counts or temporaries left behind
    # the summary carries each slide's tumour cells and their percentages per class
    cells = json.loads((ref / "a.json").read_text())["cells"]
    for row in rows:
        assert int(row["n_tumour_cells"]) == cells["n_tumour_cells"]
        for k, v in cells["tumour_percent"].items():
            assert float(row[f"tumour_pct_{k}"]) == pytest.approx(v)
        assert row["no_call"] == ""


def test_a_killed_worker_is_retried_once_then_reported(cluster, cohort, monkeypatch, tmp_path):
    """a.tif kills its worker on its first run only: retried, ok. b.tif kills it every
    time: reported after one retry. c.tif is untouched."""
    real = batch.score_one
    marks = str(tmp_path / "marks")
    os.makedirs(marks)

    def killer(path, out_dir, *args):
        name = os.path.basename(path)
        earlier = sum(m.startswith(name) for m in os.listdir(marks))
        open(os.path.join(marks, f"{name}.{earlier}"), "w").close()
        if name == "b.tif" or (name == "a.tif" and earlier == 0):
            os._exit(3)
        return real(path, out_dir, *args)

    monkeypatch.setattr(batch, "score_one", killer)
    out = tmp_path / "out"
    rows = batch.score_cohort(cohort, out, params=PARAMS, scheduler=cluster)
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert "died" in rows[1]["error"] and str(cohort[1]) in rows[1]["error"]
    assert [r["status"] for r in _summary(out)] == ["ok", "error", "ok"]
    runs = sorted(os.listdir(marks))
    # a.tif ran again after its kill (and may run once more when a later kill lost the
    # result its worker held before the client fetched it)
    assert sum(m.startswith("a.tif") for m in runs) >= 2
    assert sum(m.startswith("b.tif") for m in runs) == batch.MAX_STARTS  # one retry, no more


def test_resume_skips_complete_outputs_only(cluster, cohort, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["batch", *map(str, cohort), "--out", str(out), "--scheduler", cluster, *FAST]
    assert main(args) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    (out / "b.geojson").write_text('{"type": "FeatureCollection", "feat')  # cut short
    (out / "c.json").unlink()
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    stdout = capsys.readouterr().out
    assert "2 of 3 slides scored, 1 skipped" in stdout
    rows = _summary(out)
    assert [r["status"] for r in rows] == ["skipped", "ok", "ok"]
    assert rows[0]["score"] and rows[0]["report"] == str(out / "a.json")
    assert (out / "a.json").stat().st_mtime_ns == before["a.json"]
    json.loads((out / "b.geojson").read_text())


def test_resume_rescores_when_the_settings_differ(cluster, slide, tmp_path):
    out = tmp_path / "out"
    rows = batch.score_cohort([slide], out, params=PARAMS, scheduler=cluster)
    assert rows[0]["status"] == "ok"
    assert batch.finished_row(str(slide), out, "mosaic", PARAMS.to_dict())["status"] == "skipped"
    other = PARAMS.with_overrides(tile_size=128).to_dict()
    assert batch.finished_row(str(slide), out, "mosaic", other) is None
    assert batch.finished_row(str(slide), out, "other", PARAMS.to_dict()) is None
