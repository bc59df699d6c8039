"""Race candidates as a person types them, and as they travel.

One grammar for every optimizer race, on a live job (``optitui send RUN race ...``)
and on a 2D test function (``optitui race --surface ...``)::

    lr*F                              every group's lr times F (F > 0)
    FIELD=VALUE[,FIELD=VALUE...]      field changes: momentum=0.8, lr=3e-4,betas=0.9,0.95
    optimizer=CLASS[,FIELD=VALUE...]  another torch.optim class, with fields

A comma inside a candidate either starts the next ``FIELD=VALUE`` or continues a
list value (``betas=0.9,0.95``). Each form is checked here with the shape rules of
the command it reads like (``scale-lr``, ``set``, ``swap-optimizer``), so a race can
never take a value those commands refuse; whether a value suits the optimizer is
decided where the optimizer is, by the same checks ``set`` and ``swap-optimizer``
get there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from optitui.store.commands import (
    MAX_CANDIDATES,
    MAX_RACE_STEPS,
    CommandError,
    Value,
    check_group,
    validate,
)
from optitui.store.fields import group_ref, parse_number, parse_text

Form = Literal["scale", "set", "swap"]

#: the candidate the live race always runs first: the settings as they are
CURRENT = "current"
RACE_USAGE = "race [steps=N] [val=true|false] CANDIDATE... [--group G]"
CANDIDATE_HELP = (
    "a candidate is lr*F, FIELD=VALUE[,FIELD=VALUE...] or optimizer=CLASS[,FIELD=VALUE...]"
)


@dataclass(frozen=True)
class Candidate:
    """One way of going on: scale the lr, change fields, or swap the optimizer class."""

    text: str  # as typed: the candidate's name in tables and answers
    form: Form
    factor: float | None = None  # lr*F
    optimizer: str | None = None  # optimizer=CLASS
    values: Mapping[str, Value] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "form": self.form}
        if self.factor is not None:
            d["factor"] = self.factor
        if self.optimizer is not None:
            d["optimizer"] = self.optimizer
        if self.values:
            d["values"] = dict(self.values)
        return d

    @classmethod
    def from_json(cls, obj: Any) -> Candidate:
        """A candidate from a command's JSON, checked as strictly as a typed one."""
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise CommandError("candidate: expected an object with its text")
        made = parse_candidate(obj["text"])
        if made.to_json() != {k: _listed(v) for k, v in obj.items()}:
            raise CommandError(f"candidate {obj['text']!r}: its fields do not match its text")
        return made


def _listed(value: Any) -> Any:
    """JSON gives lists where a candidate keeps tuples; compare like with like."""
    if isinstance(value, dict):
        return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    return value


def _pairs(text: str) -> list[tuple[str, str]]:
    """``a=1,b=0.9,0.99`` -> [("a", "1"), ("b", "0.9,0.99")]: a piece with no ``=``
    continues the value before it."""
    pairs: list[tuple[str, str]] = []
    for piece in text.split(","):
        name, eq, value = piece.partition("=")
        if eq:
            if not name.strip():
                raise ValueError(f"{piece!r}: expected FIELD=VALUE")
            pairs.append((name.strip(), value))
        elif pairs and piece.strip():
            pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]},{piece}")
        else:
            raise ValueError(f"{piece!r}: expected FIELD=VALUE; {CANDIDATE_HELP}")
    return pairs


def parse_candidate(text: str) -> Candidate:
    """A typed candidate, checked. Raises CommandError (a ValueError) naming the
    candidate, the field and what is allowed."""
    try:
        return _parse(text.strip())
    except ValueError as exc:
        raise CommandError(f"candidate {text!r}: {exc}") from None


def _parse(text: str) -> Candidate:
    if not text:
        raise ValueError(CANDIDATE_HELP)
    if text.startswith("lr*"):
        try:  # written as scale-lr's factor is
            factor = float(parse_number(text[3:].strip()))
        except ValueError as exc:
            raise ValueError(f"factor: {text[3:]!r} is not a number ({exc})") from None
        checked = validate("scale-lr", {"factor": factor})  # the rules of scale-lr
        return Candidate(text, "scale", factor=checked["factor"])
    values: dict[str, Any] = {}
    name: str | None = None
    for key, raw in _pairs(text):
        if key in values or (key == "optimizer" and name is not None):
            raise ValueError(f"{key} is given twice")
        if key == "optimizer":
            name = raw.strip()
            continue
        try:
            values[key] = parse_text(raw)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    if name is not None:  # the rules of swap-optimizer
        checked = validate("swap-optimizer", {"name": name, "values": values})
        return Candidate(text, "swap", optimizer=checked["name"], values=checked["values"])
    checked = validate("set", {"values": values})  # the rules of set
    return Candidate(text, "set", values=checked["values"])


def parse_candidates(words: list[str]) -> list[Candidate]:
    """Every candidate of a race, or CommandError for the first bad one: one bad
    candidate refuses the whole race."""
    if len(words) > MAX_CANDIDATES:
        raise CommandError(f"{len(words)} candidates; a race takes at most {MAX_CANDIDATES}")
    made: list[Candidate] = []
    for word in words:
        if word.strip() == CURRENT:
            raise CommandError(f"{CURRENT!r} always runs first; name only the alternatives")
        cand = parse_candidate(word)
        if any(c.text == cand.text for c in made):
            raise CommandError(f"candidate {cand.text!r} is given twice")
        made.append(cand)
    return made


@dataclass(frozen=True)
class RaceRequest:
    """A live race as typed after ``race``: steps, validation, candidates, group."""

    candidates: tuple[Candidate, ...]
    steps: int | None = None
    val: bool | None = None
    group: int | str | None = None


def parse_race(words: list[str], group: str | None = None) -> RaceRequest:
    """``race [steps=N] [val=true|false] CANDIDATE...`` (``--group`` given apart, as for
    ``set``). Raises CommandError with the reason."""
    steps: int | None = None
    val: bool | None = None
    rest: list[str] = []
    for word in words:
        key, eq, raw = word.partition("=")
        if eq and key == "steps":
            try:
                number = parse_number(raw.strip())
            except ValueError as exc:
                raise CommandError(f"steps: {raw!r} is not a whole number ({exc})") from None
            if not isinstance(number, int):
                raise CommandError(f"steps: {raw!r} is not a whole number")
            steps = number
            if not 1 <= steps <= MAX_RACE_STEPS:
                raise CommandError(f"steps: expected 1..{MAX_RACE_STEPS}, got {steps}")
        elif eq and key == "val":
            try:
                parsed = parse_text(raw)
            except ValueError:
                parsed = None
            if not isinstance(parsed, bool):
                raise CommandError(f"val: expected true or false, got {raw!r}")
            val = parsed
        else:
            rest.append(word)
    if not rest:
        raise CommandError(f"usage: {RACE_USAGE}; {CANDIDATE_HELP}")
    where = check_group(None if group is None else group_ref(group))
    return RaceRequest(tuple(parse_candidates(rest)), steps, val, where)
