"""Sending a command and waiting for the job's answer (``optitui send``, the viewer)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optitui.store import commands
from optitui.store.fields import FieldError, FieldSpec
from optitui.store.layout import RunPaths
from optitui.store.reader import (
    LIVE_STATES,
    CommandOutcome,
    RunReader,
    RunUnreadable,
    open_reader,
    why_unreadable,
)


class NoAnswer(Exception):
    """No job answered: it is not running, or did not reply in time."""


@dataclass(frozen=True)
class Sent:
    id: str
    outcome: CommandOutcome | None


def resolve_run(run: str | Path, root: str | Path = "runs") -> RunPaths:
    """A run directory given as a path, or as a name under ``root``. Raises RunUnreadable
    with one line: no such run, not a run directory, permission denied (whose it is)."""
    p = Path(run)
    for cand in (p, Path(root) / p):
        why = why_unreadable(cand)
        if why is not None:
            raise RunUnreadable(f"{run}: {why}")
        try:
            if RunPaths(cand).exists():
                return RunPaths(cand)
        except PermissionError:
            raise RunUnreadable(f"{run}: permission denied") from None
    for cand in (p, Path(root) / p):
        if cand.is_dir():  # (a job starting has not made its store yet)
            why = "no store.sqlite in it: not yet, if its job is starting"
            raise RunUnreadable(f"{run}: not a run directory ({why})")
        if cand.exists():
            raise RunUnreadable(f"{run}: not a run directory ({cand} is a file, not a folder)")
    raise RunUnreadable(f"{run}: not a run directory (no such folder, nor a run under {root}/)")


def wait_outcome(reader: RunReader, cid: str, timeout: float) -> CommandOutcome | None:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        out = reader.outcome(cid)
        if out is not None:
            return out
        if time.monotonic() >= deadline:
            return None
        if not reader.status().alive:
            return reader.outcome(cid)
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


def check_values(reader: RunReader, kind: str, args: dict[str, Any]) -> None:
    """Check the *shape* of a ``set``'s values against the fields the job published:
    a list for a number, a number for a pair, a pair of three is malformed (exit 2 at
    ``send``), with the job's own wording. Bounds and cross-field rules stay the job's
    to decide (answered ``rejected``). Raises CommandError."""
    if kind != "set" or not isinstance(args.get("values"), dict):
        return
    _, groups = reader.groups()
    ref = args.get("group")
    for g in groups:
        fields = g.get("fields")
        if not isinstance(fields, dict) or ref not in (None, g.get("index"), g.get("name")):
            continue
        for name, value in args["values"].items():
            try:
                spec = FieldSpec.from_json(fields[name])
            except (KeyError, TypeError, ValueError):
                continue  # not a field here, or a spec this version cannot read: the job says
            if not _same_shape(spec, value):
                raise commands.CommandError(
                    f"group {g.get('name')}: {FieldError(name, value, spec.allowed())}"
                )


def _same_shape(spec: FieldSpec, value: Any) -> bool:
    if spec.kind == "tuple":
        return isinstance(value, tuple | list) and len(value) == len(spec.items)
    if spec.kind in ("float", "int"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if spec.kind == "bool":
        return isinstance(value, bool | int | float)
    return True


def send(
    paths: RunPaths, kind: str, args: dict[str, Any] | None = None, *, timeout: float = 10.0
) -> Sent:
    """Send one command; wait up to ``timeout`` s for its outcome (0: do not wait).

    Raises CommandError for a malformed command (nothing is sent) and NoAnswer
    when the run is not alive or did not answer in time.
    """
    with open_reader(paths.root) as reader:
        status = reader.status()
        if not status.alive:
            raise NoAnswer(f"the run is {status.state}; no job is there to answer")
        check_values(reader, kind, args or {})
        try:
            cid = commands.send(paths, kind, args)
        except OSError as exc:  # an inbox this user cannot write, a read-only filesystem
            raise RunUnreadable(
                f"{paths.root}: cannot write the command into {paths.inbox}: {exc.strerror or exc}"
            ) from None
        if timeout <= 0:
            return Sent(cid, None)
        out = wait_outcome(reader, cid, timeout)
        if out is None:
            state = reader.status().state
            raise NoAnswer(
                f"no answer within {timeout:g} s (run is {state}); command {cid} stays queued"
                if state in LIVE_STATES
                else f"the run ended ({state}) before answering command {cid}"
            )
        return Sent(cid, out)
