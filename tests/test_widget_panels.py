"""The dock widget is composed of panels over one controller: the structure is checked from
the source, the job runner that the panels share is driven on its own."""

from __future__ import annotations

import ast
import time
from pathlib import Path

QT = Path(__file__).resolve().parents[1] / "src" / "napari_her2" / "_qt"
#: at most this many lines in widget.py: it builds the panels and wires them, nothing more
WIDGET_MAX_LINES = 250


def test_no_qt_class_has_more_than_two_bases():
    """Panels are composed, not stacked from mixins."""
    wide = []
    for path in sorted(QT.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and len(node.bases) > 2:
                wide.append(f"{path.name}: {node.name}({', '.join(map(ast.unparse, node.bases))})")
    assert wide == []


def test_the_widget_module_stays_small():
    lines = (QT / "widget.py").read_text(encoding="utf-8").count("\n")
    assert lines <= WIDGET_MAX_LINES, f"widget.py has {lines} lines"


def test_the_widget_is_built_from_panels(viewer_widget):
    from qtpy.QtCore import QObject
    from qtpy.QtWidgets import QWidget

    _, widget = viewer_widget
    for name in ("form", "region", "tma", "run_panel", "panel", "explain", "review"):
        panel = getattr(widget, name)
        assert isinstance(panel, QWidget) and widget.isAncestorOf(panel), name
    for name in ("jobs", "scoring"):
        core = getattr(widget, name)
        assert isinstance(core, QObject) and not isinstance(core, QWidget), name
    assert widget.score_button is widget.run_panel.score_button
    assert widget.status is widget.run_panel.status
    assert widget.progress is widget.run_panel.progress


# ------------------------------------------------------------------ the job runner


def _steps(n, cancel, pause_s=0.0):
    from napari_her2.errors import ScoringCancelled

    for i in range(n):
        if cancel.is_set():
            raise ScoringCancelled("cancelled")
        time.sleep(pause_s)
        yield i
    return f"{n} steps"


def _counting_job(n, pause_s, cancel, done):
    from napari_her2._qt.updates import until_cancelled

    return (yield from until_cancelled(_steps(n, cancel, pause_s), done))


def _failing_job(cancel, done):
    from napari_her2.errors import Her2Error

    try:
        yield 0
        raise Her2Error("slide.svs: the file is truncated")
    finally:
        done.set()


class _Seen:
    """What a runner reported, signal by signal."""

    def __init__(self, runner) -> None:
        self.yielded: list = []
        self.returned: list = []
        self.started: list[str] = []
        self.errored: list[BaseException] = []
        self.cancelled = 0
        self.finished = 0
        runner.started.connect(self.started.append)
        runner.errored.connect(self.errored.append)
        runner.cancelled.connect(self._on_cancelled)
        runner.finished.connect(self._on_finished)

    def _on_cancelled(self) -> None:
        self.cancelled += 1

    def _on_finished(self) -> None:
        self.finished += 1


def _run(runner, seen, job, *args):
    runner.run(job, *args, status="working", on_yielded=seen.yielded.append,
               on_returned=seen.returned.append)


def test_a_job_yields_returns_and_finishes(qtbot):
    from napari_her2._qt.jobs import JobRunner

    runner = JobRunner()
    seen = _Seen(runner)
    _run(runner, seen, _counting_job, 3, 0.0)
    assert runner.running and seen.started == ["working"]
    qtbot.waitUntil(lambda: seen.finished == 1, timeout=10_000)
    assert seen.yielded == [0, 1, 2] and seen.returned == ["3 steps"]
    assert seen.cancelled == 0 and seen.errored == [] and not runner.running


def test_a_cancelled_job_says_so_once_and_returns_nothing(qtbot):
    from napari_her2._qt.jobs import JobRunner

    runner = JobRunner()
    seen = _Seen(runner)
    cancelling = []
    runner.cancelling.connect(lambda: cancelling.append(True))
    _run(runner, seen, _counting_job, 10_000, 0.005)
    qtbot.waitUntil(lambda: len(seen.yielded) > 0, timeout=10_000)
    runner.cancel()
    qtbot.waitUntil(lambda: seen.finished == 1, timeout=10_000)
    assert cancelling == [True]
    assert seen.cancelled == 1 and seen.returned == [] and seen.errored == []
    assert len(seen.yielded) < 10_000


def test_a_failing_job_reports_its_error(qtbot):
    from napari_her2._qt.jobs import JobRunner, error_text
    from napari_her2.errors import Her2Error

    runner = JobRunner()
    seen = _Seen(runner)
    _run(runner, seen, _failing_job)
    qtbot.waitUntil(lambda: seen.finished == 1, timeout=10_000)
    assert [type(e) for e in seen.errored] == [Her2Error] and seen.cancelled == 0
    assert error_text(seen.errored[0]) == "slide.svs: the file is truncated"
    assert error_text(ValueError("bad")) == "scoring failed: ValueError: bad"


def test_a_stopped_job_no_longer_reaches_the_panels(qtbot):
    from napari_her2._qt.jobs import JobRunner

    runner = JobRunner()
    seen = _Seen(runner)
    _run(runner, seen, _counting_job, 10_000, 0.002)
    qtbot.waitUntil(lambda: len(seen.yielded) > 0, timeout=10_000)
    runner.stop()  # waits until the job has ended
    assert not runner.running
    before = len(seen.yielded)
    qtbot.wait(200)  # what the stopped worker had queued is delivered now, and dropped
    assert len(seen.yielded) == before
    assert seen.finished == 0 and seen.cancelled == 0 and seen.returned == []
    _run(runner, seen, _counting_job, 2, 0.0)  # the next job runs as usual
    qtbot.waitUntil(lambda: seen.finished == 1, timeout=10_000)
    assert seen.yielded[before:] == [0, 1] and seen.returned == ["2 steps"]

