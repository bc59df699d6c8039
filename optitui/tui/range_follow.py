"""Following one LR range test in the run store while it runs (Textual-free, one thread)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

from optitui.store.access import RunAccess
from optitui.store.reader import CommandOutcome, RangeTest

Deliver = Callable[[RangeTest | None, CommandOutcome | None, str], None]


def follow_range_test(
    run: RunAccess,
    test_id: str,
    deliver: Deliver,
    stop: threading.Event,
    interval: float = 0.2,
) -> None:
    """Hand every change of the test to ``deliver`` until it has ended, was refused,
    the run is over, or ``stop`` is set.

    The job rewrites the test's row a few times a second while it sweeps; a
    read delivers (test or None, the lr-find command's outcome, run state).
    """
    last: tuple[object, ...] | None = None
    while not stop.is_set():
        try:
            test = run.range_test(test_id)
            outcome = run.outcome(test_id)
            state = run.status().state
        except (sqlite3.Error, OSError):  # a busy or briefly unreadable store: try again
            stop.wait(interval)
            continue
        key = (
            None if test is None else (test.status, len(test.lrs), test.time),
            None if outcome is None else outcome.applied,
            state,
        )
        if key != last:
            deliver(test, outcome, state)
            last = key
        ended = test is not None and test.status != "running"
        refused = outcome is not None and not outcome.applied
        if ended or refused or state not in ("starting", "running", "paused", "lr-find"):
            return
        stop.wait(interval)
