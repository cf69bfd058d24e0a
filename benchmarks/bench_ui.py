"""Interactivity while scoring in napari: time to the first tile overlay and event-loop stalls.

Opens a slide in a real napari viewer (needs a display: run under ``xvfb-run``), docks the
HER2 scoring widget and presses Score. A 10 ms Qt timer records how late each tick runs:
  baseline   the longest gap between ticks while the viewer sits idle (same run)
  scoring    the longest gap between ticks while the worker scores the slide (from the
             moment the Score click returns to the last tile)
and the time the Score click itself takes (it creates the tile layer: napari's layer creation
is the slowest UI-thread step, so it happens there and not mid-run), and the time from pressing
Score to the first tiles drawn. Targets: first overlay < 2 s, no stall over 100 ms.

    xvfb-run -a .venv/bin/python benchmarks/bench_ui.py [--slide PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path


class TickRecorder:
    """Longest interval between consecutive runs of a 10 ms timer."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.last = time.perf_counter()
        self.gaps: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self.last)
        self.last = now

    def start(self) -> None:
        self.gaps.clear()
        self.last = time.perf_counter()
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return max(self.gaps) if self.gaps else float("nan")


def spin(app, seconds: float, until=None) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and not (until and until()):
        app.processEvents()
        time.sleep(0.002)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path)
    args = ap.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_her2._sample_data import sample_slide_path

    slide = args.slide or sample_slide_path()
    viewer = napari.Viewer(show=True)
    viewer.open(str(slide), plugin="napari-her2")
    _, widget = viewer.window.add_plugin_dock_widget("napari-her2", "HER2 scoring")
    app = QApplication.instance()
    spin(app, 1.0)

    ticks = TickRecorder()
    ticks.start()
    spin(app, 2.0)
    idle = ticks.stop()

    first: list[float] = []
    t0 = time.perf_counter()
    widget.start_scoring()
    click = time.perf_counter() - t0
    ticks.start()

    def drawn() -> bool:
        layer = widget.tiles_layer
        if not first and layer is not None and layer.data.any():
            first.append(time.perf_counter() - t0)
        return widget.worker is None

    spin(app, 600.0, until=drawn)
    total = time.perf_counter() - t0
    stall = ticks.stop()
    n = len(widget.report.results) if widget.report else 0
    viewer.close()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; slide {Path(slide).name}; "
          f"{n} tiles scored in {total:.1f} s")
    print(f"Score click handled in {1000 * click:.0f} ms (creates the tile layer)")
    print(f"first tile overlay after Score: {first[0] if first else float('nan'):.2f} s "
          "(target < 2 s)")
    print(f"longest event-loop gap: idle {1000 * idle:.0f} ms, while scoring "
          f"{1000 * stall:.0f} ms (target < 100 ms); ratio scoring / idle = {stall / idle:.2f}")


if __name__ == "__main__":
    main()
