"""Sending commands from the viewer and waiting for the job's answer.

Textual-free: :meth:`Steering.send` hands the command to the run (a file of a
few hundred bytes, or a line to the ssh link: done on the UI thread so the change
shows as pending at once) and :func:`await_outcome` runs in a worker thread until
the job answers, the run ends, the command cannot be delivered, or the worker is
told to stop.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, replace
from typing import Any, Literal

from optitui.store.access import RunAccess
from optitui.store.reader import CommandOutcome

State = Literal["pending", "applied", "rejected", "unanswered"]


@dataclass(frozen=True)
class Change:
    """One command this viewer sent, and what became of it."""

    id: str
    kind: str
    args: dict[str, Any]
    label: str  # what the user asked for, e.g. "lr x1.1 (head)"
    group: int | None  # the group it targets; None: all groups or not about a group
    state: State = "pending"
    step: int | None = None
    reason: str | None = None

    def answered(self, outcome: CommandOutcome | None, note: str | None = None) -> Change:
        if outcome is None:
            return replace(self, state="unanswered", reason=note or "no answer")
        if outcome.applied:  # its reason, if any, says what it made (a checkpoint id)
            return replace(self, state="applied", step=outcome.step, reason=outcome.reason)
        return replace(self, state="rejected", step=outcome.step, reason=outcome.reason)

    def describe(self) -> str:
        if self.state == "pending":
            return f"{self.label}: pending"
        if self.state == "applied":
            if self.reason and self.reason.startswith("rewound"):  # a restore: where to
                return f"{self.label}: {self.reason}"
            note = f"; {self.reason}" if self.reason else ""
            return f"{self.label}: applied after step {self.step}{note}"
        if self.state == "rejected":
            return f"{self.label}: rejected: {self.reason}"
        return f"{self.label}: {self.reason}"


class Steering:
    """The commands of one viewer on one run."""

    def __init__(self, run: RunAccess) -> None:
        self.run = run
        self.changes: dict[str, Change] = {}
        self._local = itertools.count(1)

    def send(self, kind: str, args: dict[str, Any], label: str, group: int | None) -> Change:
        """Write the command; raises CommandError (nothing sent) when it is malformed."""
        cid = self.run.send(kind, args)
        change = Change(cid, kind, dict(args), label, group)
        self.changes[cid] = change
        return change

    def refuse(self, kind: str, args: dict[str, Any], label: str, reason: str) -> Change:
        """Record a command that was not sent (the run is over), so it shows like any other."""
        cid = f"local-{next(self._local)}"
        change = Change(cid, kind, dict(args), label, None, "unanswered", None, reason)
        self.changes[cid] = change
        return change

    def settle(self, cid: str, outcome: CommandOutcome | None, note: str | None) -> Change | None:
        change = self.changes.get(cid)
        if change is None:
            return None
        done = change.answered(outcome, note)
        self.changes[cid] = done
        return done

    def pending_groups(self) -> set[int | None]:
        return {c.group for c in self.changes.values() if c.state == "pending"}

    def recent(self, n: int) -> list[Change]:
        return list(self.changes.values())[-n:]


def await_outcome(
    run: RunAccess,
    cid: str,
    stop: threading.Event,
    poll: float = 0.05,
) -> tuple[CommandOutcome | None, str | None]:
    """(outcome, None) once the job answers; (None, why) when it never will or we stop.

    A live job answers every command (a paused one too), so there is no
    timeout while the run is alive.
    """
    delay = 0.01
    while not stop.is_set():
        out = run.outcome(cid)
        if out is not None:
            return out, None
        lost = run.undelivered(cid)
        if lost is not None:
            return None, lost
        status = run.status()
        if not status.alive:
            out = run.outcome(cid)  # it may have answered just before ending
            if out is not None:
                return out, None
            return None, f"no answer: the run is {status.state}"
        stop.wait(delay)
        delay = min(delay * 1.5, poll)
    return None, "no answer: the viewer stopped waiting"
