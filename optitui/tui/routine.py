"""Routine events the log condenses into one line, and what each log filter keeps.

Periodic and best-checkpoint saves come every few hundred steps; one line per save
pushes the commands, warnings and errors out of a short log. They are counted
instead, into one line that updates:
``best: step 12200 (val 0.0031), 47 saved, keep 3 + best``.
Every other save (manual, before a restore, on a failure) stays a line of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from optitui.store.reader import EventRow
from optitui.tui import fmt

#: the reasons of saves the job makes by itself, on its policy
ROUTINE_SAVES = frozenset({"periodic", "best"})

#: the log's filters, in the order the key cycles through them
FILTERS = ("all", "commands", "warnings")


def is_routine(event: EventRow) -> bool:
    """A save the job made on its own policy (periodic, or a new best validation loss)."""
    data = event.data or {}
    return (
        event.kind == "checkpoint"
        and data.get("marker") == "save"
        and data.get("reason") in ROUTINE_SAVES
    )


def kept(policy: Any) -> str:
    """What a checkpoint policy (``controls["checkpoints"]``) keeps on disk:
    ``keep 3 + best``, the newest 3 periodic saves and the best one."""
    if not isinstance(policy, dict):
        return ""
    best = " + best" if policy.get("keep_best") else ""
    return f"keep {policy.get('keep_last', '?')}{best}"


def shown(kind: str, log_filter: str) -> bool:
    """Whether a log line of ``kind`` shows under ``log_filter``: "commands" keeps the
    commands and their outcomes, "warnings" the warnings and errors (the viewer's own
    alarms among them)."""
    if log_filter == "commands":
        return kind == "command"
    if log_filter == "warnings":
        return kind in ("warning", "error")
    return True


@dataclass
class SaveTally:
    """The routine saves seen so far, as one line."""

    saved: int = 0
    last_step: int | None = None
    best_step: int | None = None
    best_val: float | None = None

    def add(self, event: EventRow) -> None:
        data = event.data or {}
        self.saved += 1
        self.last_step = event.step
        if data.get("reason") == "best":
            self.best_step = event.step
            val = data.get("val")
            if isinstance(val, int | float) and not isinstance(val, bool) and math.isfinite(val):
                self.best_val = float(val)
            else:
                self.best_val = None

    def text(self, keep: str = "") -> str:
        """``best: step 12200 (val 0.0031), 47 saved, keep 3 + best``; the last save's step
        when none was a best; ``keep`` says what the policy keeps (:func:`kept`)."""
        if self.best_step is not None:
            val = "" if self.best_val is None else f" (val {fmt.value(self.best_val)})"
            parts = [f"best: step {self.best_step}{val}"]
        else:
            parts = [f"last: step {self.last_step}"]
        parts.append(f"{self.saved} saved")
        if keep:
            parts.append(keep)
        return ", ".join(parts)
