"""Supervised background threads: a job is never alive and deaf, or alive and unrecorded.

Every thread a job starts (command intake, store writer, checkpoint writer)
runs its body under a :class:`Supervisor`. Bodies handle their own inputs one
at a time, so a bad input costs one refusal; an exception that still escapes
a body is a fault the supervisor sees. It reports it (stderr and the
``report`` callback, which records an event) and runs the body again: the
input that was being handled is gone, so it is dropped. A body that keeps
failing (more than ``restarts`` times within ``window`` seconds) is not
restarted; the supervisor records why in :attr:`Supervisor.failed`, and the
training thread, which checks that attribute at every step boundary, fails
the run with that reason.

No other code in a job starts a ``threading.Thread`` (a test checks it).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable

Report = Callable[[str, str], None]
"""``report(message, traceback_text)``: record a fault (an event in the run store)."""


class SupervisedThread(threading.Thread):
    """A daemon thread that runs ``body`` again after an unexpected exception."""

    def __init__(self, supervisor: Supervisor, name: str, body: Callable[[], None]) -> None:
        super().__init__(name=name, daemon=True)
        self.supervisor = supervisor
        self.body = body
        self.restarts = 0

    def run(self) -> None:
        sup = self.supervisor
        recent: deque[float] = deque()
        while True:
            try:
                self.body()
                return  # the body ended on purpose
            except Exception as exc:
                now = time.monotonic()
                recent.append(now)
                while recent and now - recent[0] > sup.window:
                    recent.popleft()
                what = f"{self.name} thread: {type(exc).__name__}: {exc}"
                tb = traceback.format_exc()
                if len(recent) > sup.restarts:
                    sup.fail(f"{what} ({len(recent)} faults within {sup.window:g} s)", tb)
                    return
                self.restarts += 1
                sup.fault(f"{what}; the input it was handling is dropped and it goes on", tb)
                time.sleep(sup.backoff)


class Supervisor:
    """Starts and watches a job's background threads."""

    def __init__(
        self,
        report: Report | None = None,
        *,
        restarts: int = 5,
        window: float = 60.0,
        backoff: float = 0.05,
    ) -> None:
        self.report = report
        self.restarts = restarts
        self.window = window
        self.backoff = backoff
        #: why a thread could not go on; the training thread fails the run with it
        self.failed: str | None = None
        self.threads: list[SupervisedThread] = []

    def thread(self, name: str, body: Callable[[], None]) -> SupervisedThread:
        """A supervised thread for ``body`` (not started)."""
        t = SupervisedThread(self, name, body)
        self.threads.append(t)
        return t

    def fault(self, message: str, tb: str) -> None:
        print(f"optitui: {message}\n{tb}", file=sys.stderr, flush=True)
        self._report(message, tb)

    def fail(self, message: str, tb: str) -> None:
        self.failed = message
        print(f"optitui: {message}; the run fails\n{tb}", file=sys.stderr, flush=True)
        self._report(f"{message}; the run fails", tb)

    def _report(self, message: str, tb: str) -> None:
        if self.report is None:
            return
        try:
            self.report(message, tb)
        except Exception as exc:  # the report itself must never take the thread down
            print(f"optitui: could not record a thread fault: {exc}", file=sys.stderr)


class BackgroundFailure(RuntimeError):
    """A background thread of the job could not go on; the run fails with its reason."""
