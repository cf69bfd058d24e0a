"""The widget's background job: one generator at a time in a napari worker thread.

:class:`JobRunner` starts ``job(*args, cancel, done)`` with fresh ``threading.Event`` s and
passes on only what the current worker reports: a job stopped to start another, or stopped
because the widget closed, no longer reaches the panels.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal

from ..errors import Her2Error, ScoringCancelled

log = logging.getLogger(__name__)

#: how long ``stop`` waits for a job to end, in seconds
STOP_TIMEOUT_S = 30.0


def error_text(err: BaseException) -> str:
    """The status line for a failed job (an unexpected error also goes to the log)."""
    if isinstance(err, Her2Error):
        return str(err)
    log.error("scoring failed", exc_info=err)
    return f"scoring failed: {type(err).__name__}: {err}"


class JobRunner(QObject):
    """Runs at most one generator job; Cancel stops it at its next step."""

    #: a job started; its status line
    started = Signal(str)
    #: Cancel was asked for
    cancelling = Signal()
    #: the job ended without a result (cancelled)
    cancelled = Signal()
    #: the job raised (anything but a cancellation)
    errored = Signal(object)
    #: the job ended, however
    finished = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker: Any = None
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._has_result = False
        self._said_cancelled = False

    @property
    def running(self) -> bool:
        return self.worker is not None

    def run(self, job: Callable[..., Any], *args: Any, status: str,
            on_yielded: Callable[[Any], None], on_returned: Callable[[Any], None]) -> None:
        """Stop the running job, then start ``job(*args, cancel, done)``: what it yields goes
        to ``on_yielded``, what it returns (unless None: cancelled) to ``on_returned``."""
        from napari.qt.threading import create_worker

        self.stop()
        self._cancel, self._done = threading.Event(), threading.Event()
        self._has_result = self._said_cancelled = False
        worker = create_worker(job, *args, self._cancel, self._done,
                               _start_thread=False, _ignore_errors=True)
        self.worker = worker

        def yielded(item: Any) -> None:
            if worker is self.worker:
                on_yielded(item)

        def returned(value: Any) -> None:
            if worker is not self.worker:
                return
            if value is None:
                self._say_cancelled()
                return
            self._has_result = True
            on_returned(value)

        worker.yielded.connect(yielded)
        worker.returned.connect(returned)
        worker.errored.connect(lambda err: self._on_errored(worker, err))
        worker.finished.connect(lambda: self._on_finished(worker))
        self.started.emit(status)
        worker.start()

    def cancel(self) -> None:
        """Ask the job to stop at its next step (it then shuts its reader threads down)."""
        # quitting the worker instead would skip the generator's clean-up
        self._cancel.set()
        self.cancelling.emit()

    def stop(self, *args: Any) -> None:
        """Cancel the job and wait until it has ended; what it still reports is dropped."""
        if self.worker is None:
            return
        self._cancel.set()
        # the job stops at its next step; it needs nothing from this (UI) thread to get there
        if not self._done.wait(timeout=STOP_TIMEOUT_S):
            log.warning("scoring did not stop within %g s", STOP_TIMEOUT_S)
        self.worker = None

    def _say_cancelled(self) -> None:
        if not self._said_cancelled:
            self._said_cancelled = True
            self.cancelled.emit()

    def _on_errored(self, worker: Any, err: BaseException) -> None:
        if worker is not self.worker:
            return
        if isinstance(err, ScoringCancelled):
            self._say_cancelled()
        else:
            self.errored.emit(err)

    def _on_finished(self, worker: Any) -> None:
        if worker is not self.worker:
            return
        if self._cancel.is_set() and not self._has_result:
            self._say_cancelled()
        self.worker = None
        self.finished.emit()
