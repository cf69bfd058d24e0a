"""Interactivity while scoring in napari: time to the first tile overlay and event-loop stalls.

Opens a slide in a real napari viewer (needs a display: run under ``xvfb-run``), docks the
HER2 scoring widget and presses Score. A 10 ms Qt timer records how late each tick runs:
  baseline   the longest gap between ticks while the viewer sits idle (same run)
  scoring    the longest gap between ticks while the worker scores the slide (from the
             moment the Score click returns to the last tile)
  finishing  the longest gap after the last tile, until the run is done: the call is shown
             and the cells layer added (napari adding a Points layer, its first draw included)
and the time the Score click itself takes (it creates the tile layer: napari's layer creation
is the slowest UI-thread step, so it happens there and not mid-run), and the time from pressing
Score to the first tiles drawn. Targets: first overlay < 2 s, no stall over 100 ms while
scoring.

    xvfb-run -a .venv/bin/python benchmarks/bench_ui.py [--slide PATH] [--idle 2.0]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class TickRecorder:
    """Longest interval between consecutive runs of a 10 ms timer."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.last = time.perf_counter()
        self.gaps: list[float] = []
        self.ends: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self.last)
        self.ends.append(now)
        self.last = now

    def start(self) -> None:
        self.gaps.clear()
        self.ends.clear()
        self.last = time.perf_counter()
        self.timer.start()

    def stop(self) -> float:
        """Stop, counting the time since the last tick as a gap too; the longest gap."""
        self.timer.stop()
        self._tick()
        return max(self.gaps)

    def longest(self, after: float = -np.inf, until: float = np.inf) -> float:
        """The longest gap that ended in (after, until]."""
        gaps = [g for g, end in zip(self.gaps, self.ends) if after < end <= until]
        return max(gaps) if gaps else float("nan")


def spin(app, seconds: float, until=None) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and not (until and until()):
        app.processEvents()
        time.sleep(0.002)


@dataclass(frozen=True)
class UiFigures:
    """What one Score run in a viewer measured (seconds; NaN when nothing was drawn)."""

    tiles: int
    total_s: float
    click_s: float
    first_overlay_s: float
    idle_gap_s: float
    scoring_gap_s: float
    finishing_gap_s: float


def measure(widget, app, idle_s: float = 2.0, settle_s: float = 1.0,
            timeout_s: float = 600.0) -> UiFigures:
    """Press Score on ``widget`` (docked in a viewer with the slide open) and time the UI:
    ``settle_s`` for the viewer to draw, ``idle_s`` of idle ticks, then the scoring run."""
    spin(app, settle_s)
    ticks = TickRecorder()
    ticks.start()
    spin(app, idle_s)
    idle = ticks.stop()

    first: list[float] = []
    total_tiles: list[int] = []
    last_tile: list[float] = []
    scoring = widget.scoring
    scoring.progress_range.connect(total_tiles.append)
    scoring.progress.connect(
        lambda done: last_tile.append(time.perf_counter())
        if total_tiles and done >= total_tiles[-1] > 0 and not last_tile else None)
    t0 = time.perf_counter()
    widget.start_scoring()
    click = time.perf_counter() - t0
    ticks.start()

    def drawn() -> bool:
        layer = widget.scoring.tiles_layer
        if not first and layer is not None and layer.data.any():
            first.append(time.perf_counter() - t0)
        return widget.jobs.worker is None

    spin(app, timeout_s, until=drawn)
    total = time.perf_counter() - t0
    ticks.stop()
    end = last_tile[0] if last_tile else np.inf
    n = len(widget.report.results) if widget.report else 0
    return UiFigures(n, total, click, first[0] if first else float("nan"), idle,
                     ticks.longest(until=end), ticks.longest(after=end))


def print_figures(fig: UiFigures, slide_name: str) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; slide {slide_name}; "
          f"{fig.tiles} tiles scored in {fig.total_s:.1f} s")
    print(f"Score click handled in {1000 * fig.click_s:.0f} ms (creates the tile layer)")
    print(f"first tile overlay after Score: {fig.first_overlay_s:.2f} s (target < 2 s)")
    print(f"longest event-loop gap: idle {1000 * fig.idle_gap_s:.0f} ms, while scoring "
          f"{1000 * fig.scoring_gap_s:.0f} ms (target < 100 ms); "
          f"ratio scoring / idle = {fig.scoring_gap_s / fig.idle_gap_s:.2f}")
    print(f"after the last tile (the call shown, the cells layer added): longest gap "
          f"{1000 * fig.finishing_gap_s:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path)
    ap.add_argument("--idle", type=float, default=2.0,
                    help="seconds of idle event loop timed before Score")
    args = ap.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_her2._sample_data import sample_slide_path

    slide = args.slide or sample_slide_path()
    viewer = napari.Viewer(show=True)
    try:
        viewer.open(str(slide), plugin="napari-her2")
        _, widget = viewer.window.add_plugin_dock_widget("napari-her2", "HER2 scoring")
        figures = measure(widget, QApplication.instance(), idle_s=args.idle)
    finally:
        viewer.close()
    print_figures(figures, Path(slide).name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
