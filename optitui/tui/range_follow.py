"""Following one LR range test or race in the run store while it runs (Textual-free,
one thread)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from optitui.store.access import RunAccess
from optitui.store.reader import LIVE_STATES, CommandOutcome, Race, RangeTest

T = TypeVar("T", RangeTest, Race)


def follow(
    run: RunAccess,
    read: Callable[[str], T | None],
    found_id: str,
    deliver: Callable[[T | None, CommandOutcome | None, str], None],
    stop: threading.Event,
    interval: float = 0.2,
) -> None:
    """Hand every change of what ``read`` reads by id (a range test, a race: rewritten
    in place while it runs, named after its command) to ``deliver`` until it has ended,
    was refused, the run is over, or ``stop`` is set. A read delivers (it or None, the
    answer to its command, the run's state)."""
    last: tuple[Any, ...] | None = None
    while not stop.is_set():
        try:
            found = read(found_id)
            outcome = run.outcome(found_id)
            state = run.status().state
        except (sqlite3.Error, OSError):  # a busy or briefly unreadable store: try again
            stop.wait(interval)
            continue
        key = (
            None if found is None else (found.status, found.time),
            None if outcome is None else outcome.applied,
            state,
        )
        if key != last:
            deliver(found, outcome, state)
            last = key
        ended = found is not None and found.status != "running"
        refused = outcome is not None and not outcome.applied
        if ended or refused or state not in LIVE_STATES:
            return
        stop.wait(interval)
