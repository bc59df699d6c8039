"""The optimizer race's commands: ``race``, ``race-cancel`` and ``race-apply``.

``race`` names alternatives to the current settings (candidates: ``lr*F``, field
changes, an optimizer swap); every one is checked with the rules of the command it
reads like (``scale-lr``, ``set``, ``swap-optimizer``) before anything runs, so one bad
candidate refuses the whole race with its reason. The loop runs the race once every
command of the boundary is answered (:func:`optitui.trainer.control.race.run`).
``race-apply`` applies a candidate through the same path as that command typed by
hand; ``race-cancel`` stops a race (the run is put back all the same).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optitui.store.candidates import parse_candidates
from optitui.store.commands import Command, CommandError
from optitui.store.race_results import DONE
from optitui.trainer.control.groups import Rejection, resolve_groups
from optitui.trainer.control.race import DEFAULT_STEPS, Race, as_edit
from optitui.trainer.control.steerable import Steerable

KINDS = ("race", "race-cancel", "race-apply")
#: checks an edit as its command would, changing nothing (raises Rejection)
Check = Callable[[Steerable, str, dict[str, Any]], None]
#: applies an edit as its command would: (groups changed, the answer's note)
Edit = Callable[[Steerable, str, dict[str, Any]], tuple[bool, str | None]]


def answer(trainer: Steerable, cmd: Command, check: Check, edit: Edit) -> tuple[bool, str | None]:
    """Apply a race command: (groups changed, the answer's note). Raises Rejection."""
    if cmd.kind == "race":
        return _race(trainer, cmd, check)
    if cmd.kind == "race-cancel":
        if trainer.pending_race is None:
            raise Rejection("no race is running")
        trainer.pending_race = None  # asked for in this batch: never started
        return False, "the race had not started"
    return _apply(trainer, cmd.args, edit)


def prepare(trainer: Steerable, race_id: str, args: dict[str, Any], check: Check) -> Race:
    """A race, once every candidate passed (Rejection with the reason: nothing ran)."""
    if not trainer.own_steps:
        raise Rejection(
            "a race runs the job's own steps on its own data, and this loop is the "
            "script's own: run the script with setup() (optitui run) to race"
        )
    if trainer.sharded is not None:
        raise Rejection(
            f"the model is sharded across ranks ({trainer.sharded}): a race snapshots "
            "the whole state, which a sharded model does not allow"
        )
    try:
        candidates = parse_candidates(list(args["candidates"]))
    except CommandError as exc:
        raise Rejection(str(exc)) from None
    group = args.get("group")
    resolve_groups(trainer, group)  # a group that does not exist refuses the race
    for c in candidates:
        try:
            check(trainer, *as_edit(c, group))
        except Rejection as exc:
            raise Rejection(f"candidate {c.text!r}: {exc}") from None
    val = args.get("val")
    has_val = trainer.job.val_data is not None
    if val and not has_val:
        raise Rejection("val=true: this job has no val_data to validate on")
    steps = int(args.get("steps") or DEFAULT_STEPS)
    return Race(race_id, candidates, steps, has_val if val is None else val, group, trainer.step)


def _race(trainer: Steerable, cmd: Command, check: Check) -> tuple[bool, str | None]:
    if trainer.pending_race is not None:
        raise Rejection("a race is already waiting to run")
    race = trainer.pending_race = prepare(trainer, cmd.id, cmd.args, check)
    said = f"{len(race.texts)} candidates x {race.steps} steps"
    return False, said + (", then validation" if race.val else "")


def _apply(trainer: Steerable, args: dict[str, Any], edit: Edit) -> tuple[bool, str | None]:
    done = trainer.races
    if not done:
        raise Rejection("no race has run yet")
    ref = args["id"]
    race = list(done.values())[-1] if ref == "latest" else done.get(ref)
    if race is None:
        raise Rejection(f"no race {ref!r}; have {', '.join(done)}")
    n = args["candidate"]
    texts = race.texts
    if not 0 <= n < len(texts):
        raise Rejection(f"race {race.id} has candidates 0..{len(texts) - 1}, not {n}")
    if race.states[n] != DONE:
        state, note = race.states[n], race.notes[n] or ""
        note = note.removeprefix(f"{state}: ")  # the 5x rule's note names its state already
        why = f": {note}" if note else ""
        raise Rejection(f"candidate {n} ({texts[n]}) did not finish ({state}{why})")
    made = race.edit(n)
    if made is None:
        return False, "candidate 0 is the current settings: nothing to change"
    changed, note = edit(trainer, *made)
    return changed, f"candidate {n} of race {race.id}: {texts[n]}" + (f"; {note}" if note else "")
