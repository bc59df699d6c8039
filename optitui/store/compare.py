"""What differs between two runs, read from their stores: the set-up each run recorded
when it started (script and arguments, environment, optimizer and every group's initial
hyperparameters, scheduler and its settings, the Job's settings) and the commands each
received, as one timeline.

Values a run's store does not hold because the optitui that wrote it did not record
them are told apart from values a run does not have (a momentum under Adam).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from optitui.store.commands import Command, CommandError, validate
from optitui.store.reader import CommandOutcome, RunReader
from optitui.store.words import describe


class Missing:
    """A value a run does not have (``why``: ``absent``) or did not record."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return self.why


ABSENT = Missing("absent")
NOT_RECORDED = Missing("not recorded")

#: (section, name shown, meta key) of the run-wide settings, in the order shown
META_FIELDS = (
    ("run", "optitui version", "optitui_version"),
    ("script", "path", "script"),
    ("script", "arguments", "script_args"),
    ("script", "contents (sha256)", "script_sha256"),
    ("environment", "device", "device"),
    ("environment", "world size", "world_size"),
    ("environment", "torch", "torch"),
    ("environment", "python", "python"),
    ("optimizer", "class", "optimizer"),
)
JOB_FIELDS = (
    ("batch size", "batch_size"),
    ("grad accumulation", "grad_accum"),
    ("clip grad norm", "clip_grad_norm"),
    ("seed", "seed"),
    ("precision", "precision"),
    ("max steps", "max_steps"),
    ("max epochs", "max_epochs"),
    ("val every", "val_every"),
)
#: snapshot entries that are not the group's hyperparameters
_NOT_HYPERPARAMETERS = {"initial_lr"}


@dataclass(frozen=True)
class Field:
    """One compared value; ``a`` or ``b`` may be ABSENT or NOT_RECORDED."""

    section: str
    name: str
    a: Any
    b: Any

    @property
    def same(self) -> bool:
        return self.a is self.b if isinstance(self.a, Missing) else self.a == self.b


@dataclass(frozen=True)
class Answer:
    """A command one run received: what, and how the job answered."""

    step: int
    command: str
    applied: bool
    reason: str | None

    @property
    def outcome(self) -> str:
        said = "applied" if self.applied else "rejected"
        return f"{said}: {self.reason}" if self.reason else said


@dataclass(frozen=True)
class Moment:
    """One line of the timeline: a command at a step, and each run's answer (None: that
    run did not receive it)."""

    step: int
    command: str
    a: Answer | None
    b: Answer | None


@dataclass
class Comparison:
    fields: list[Field]
    timeline: list[Moment]
    notes: list[str] = field(default_factory=list)

    @property
    def differences(self) -> list[Field]:
        return [f for f in self.fields if not f.same]

    @property
    def commands_differ(self) -> bool:
        return any(m.a is None or m.b is None for m in self.timeline)

    @property
    def same(self) -> bool:
        return not self.differences and not self.commands_differ


def command_words(o: CommandOutcome) -> str:
    """A received command as ``optitui send`` takes it (its kind, for one unreadable)."""
    try:
        payload = json.loads(o.payload)
        args = payload.get("args", {}) if isinstance(payload, dict) else {}
        return describe(Command(o.id, o.kind, validate(o.kind, args), o.payload))
    except (CommandError, ValueError, TypeError, KeyError, AttributeError):
        return f"{o.kind} (as sent: {o.payload[:60]})"


def answers(reader: RunReader) -> list[Answer]:
    """Every command the run received, in the order it answered them."""
    return [Answer(o.step, command_words(o), o.applied, o.reason) for o in reader.outcomes()]


def _flat(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    """Nested settings as dotted names (``schedulers[1].T_max``); lists of plain values whole."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flat(f"{prefix}.{k}" if prefix else str(k), v)
    elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            yield from _flat(f"{prefix}[{i}]", v)
    else:
        yield prefix, value


def setup(reader: RunReader) -> dict[tuple[str, str], Any]:
    """What a run recorded about its set-up, by (section, name), in the order shown."""
    meta = reader.meta()
    out: dict[tuple[str, str], Any] = {}
    for section, name, key in META_FIELDS:
        out[section, name] = meta.get(key, NOT_RECORDED)
    _, groups = reader.groups(first=True)
    out["optimizer", "param groups"] = len(groups)
    for i, g in enumerate(groups):
        if not isinstance(g, dict):
            continue
        values = g.get("values")
        if not isinstance(values, dict):
            values = {}
        section = f"group {i}"
        out[section, "name"] = g.get("name", str(i))
        out[section, "parameters"] = g.get("params", NOT_RECORDED)
        out[section, "frozen"] = g.get("frozen", NOT_RECORDED)
        for k, v in values.items():
            if k not in _NOT_HYPERPARAMETERS:
                out[section, k] = v
    out["scheduler", "class"] = meta.get("scheduler", NOT_RECORDED)
    out["scheduler", "interval"] = meta.get("scheduler_interval", NOT_RECORDED)
    settings = meta.get("scheduler_settings", NOT_RECORDED)
    if isinstance(settings, dict):
        for k, v in _flat("", settings):
            out["scheduler", k] = v
    elif settings is NOT_RECORDED and meta.get("scheduler") is not None:
        out["scheduler", "settings"] = NOT_RECORDED
    for name, key in JOB_FIELDS:
        out["job", name] = meta.get(key, NOT_RECORDED)
    extra = meta.get("extra")
    if isinstance(extra, dict):
        for k, v in _flat("", extra):
            out["job", f"extra.{k}"] = v
    return out


def _timeline(a: list[Answer], b: list[Answer]) -> list[Moment]:
    """Both runs' commands by step; one the two runs received alike at the same step is one
    line with both answers."""
    left = list(b)
    moments: list[Moment] = []
    for x in a:
        match = next(
            (y for y in left if (y.step, y.command, y.applied) == (x.step, x.command, x.applied)),
            None,
        )
        if match is not None:
            left.remove(match)
        moments.append(Moment(x.step, x.command, x, match))
    moments += [Moment(y.step, y.command, None, y) for y in left]
    return sorted(moments, key=lambda m: m.step)  # stable: each run's own order kept


def _group_notes(sa: dict[tuple[str, str], Any], sb: dict[tuple[str, str], Any]) -> list[str]:
    names_a = [v for (s, n), v in sa.items() if s.startswith("group ") and n == "name"]
    names_b = [v for (s, n), v in sb.items() if s.startswith("group ") and n == "name"]
    if names_a == names_b:
        return []
    return [
        "param groups compared by position: A has "
        f"{', '.join(map(str, names_a)) or 'none'}, B has {', '.join(map(str, names_b)) or 'none'}"
    ]


_SECTIONS = {"run": 0, "script": 1, "environment": 2, "optimizer": 3, "scheduler": 5, "job": 6}


def _section_order(section: str) -> tuple[int, int]:
    """Sections in the order shown, group 0, 1, ... after the optimizer (a stable sort keeps
    each section's own order)."""
    if section.startswith("group "):
        return 4, int(section.split()[1])
    return _SECTIONS.get(section, 7), 0


def compare(a: RunReader, b: RunReader) -> Comparison:
    """Every set-up value of two runs side by side, and their commands as one timeline."""
    sa, sb = setup(a), setup(b)
    keys = sorted(list(sa) + [k for k in sb if k not in sa], key=lambda k: _section_order(k[0]))
    fields = [Field(s, n, sa.get((s, n), ABSENT), sb.get((s, n), ABSENT)) for s, n in keys]
    notes = _group_notes(sa, sb)
    for label, values in (("A", sa), ("B", sb)):
        missing = [n for (s, n), v in values.items() if v is NOT_RECORDED]
        if missing:
            notes.append(f"{label}'s store does not hold: {', '.join(missing)}")
    return Comparison(fields, _timeline(answers(a), answers(b)), notes)
