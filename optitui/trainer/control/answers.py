"""How the job answers a command: one outcome row and one event, now or once its effect exists.

Most commands take effect at the step boundary where they are applied, and are
answered there. A save is answered later, from the checkpoint writer's thread,
once the file is on disk and listed (or with the writer's reason for not
writing it): the training thread never waits for the disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from optitui.store.commands import Command
from optitui.store.records import Event, Outcome
from optitui.store.words import describe


class _Recorder(Protocol):
    def put(self, record: Event | Outcome) -> bool: ...


def records(cmd: Command, step: int, applied: bool, text: str | None) -> list[Event | Outcome]:
    """The outcome and the event for ``cmd``: ``text`` is the reason for a rejection, or
    what the command made (a checkpoint id) or how it was applied, for an applied one."""
    what = describe(cmd)
    if not applied:
        return [
            Outcome(cmd.id, cmd.kind, cmd.raw, False, step, text),
            Event(step, "command", f"{what}: rejected: {text}"),
        ]
    return [
        Outcome(cmd.id, cmd.kind, cmd.raw, True, step, text),
        Event(
            step,
            "command",
            f"{what}: applied after step {step}" + (f"; {text}" if text else ""),
            {"kind": cmd.kind, "args": cmd.args},
        ),
    ]


def later(recorder: _Recorder, cmd: Command, step: int) -> Callable[[str | None, str | None], None]:
    """The answer to a save taken at ``step``, given by the checkpoint writer: applied with
    the checkpoint's id once it is listed, or rejected with the writer's reason."""

    def answer(cid: str | None, why: str | None) -> None:
        done = cid is not None
        for r in records(cmd, step, done, f"checkpoint {cid}" if done else why):
            recorder.put(r)

    return answer
