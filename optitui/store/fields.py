"""Editable hyperparameter fields: what each accepts, checked the same way everywhere.

The job describes every param group's fields as :class:`FieldSpec` data in the
run store; the viewer's editor and the job both check values with
:meth:`FieldSpec.check`, so the message a user sees inline is the one the job
would give. Specs mirror the checks of the torch optimizer constructors, plus
"finite numbers only".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["float", "int", "bool", "tuple", "readonly"]


class FieldError(ValueError):
    """A value a field does not accept. Says which field, what was given, what is allowed."""

    def __init__(self, name: str, given: Any, allowed: str) -> None:
        self.field = name
        self.given = given
        self.allowed = allowed
        super().__init__(f"{name}: got {_show(given)}; allowed: {allowed}")


def _show(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    if isinstance(value, str):
        return repr(value)
    return repr(value) if not isinstance(value, float) else f"{value:g}"


@dataclass(frozen=True)
class FieldSpec:
    """One field of a param group, with the bounds its optimizer enforces."""

    name: str
    kind: Kind
    low: float | None = None
    low_open: bool = False  # True: value > low, False: value >= low
    high: float | None = None
    high_open: bool = False  # True: value < high, False: value <= high
    items: tuple[FieldSpec, ...] = field(default=())  # per-element specs of a tuple
    note: str = ""  # why a field is read-only, or a cross-field rule

    @property
    def editable(self) -> bool:
        return self.kind != "readonly"

    def allowed(self) -> str:
        if self.kind == "readonly":
            return f"not editable ({self.note})" if self.note else "not editable"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "tuple":
            inner = ", ".join(f"{s.name} {s._bounds('x').strip()}" for s in self.items)
            return f"{len(self.items)} numbers: {inner}"
        what = "a whole number" if self.kind == "int" else "a finite number"
        b = self._bounds("")
        return f"{what}{b}" + (f"; {self.note}" if self.note else "")

    def _bounds(self, var: str) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        if not parts:
            return " (any)" if not var else "any"
        return (" " if not var else "") + " and ".join(parts)

    def check(self, value: Any) -> Any:
        """The value normalised for the optimizer, or FieldError."""
        if self.kind == "readonly":
            raise FieldError(self.name, value, self.allowed())
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int | float) and value in (0, 1):
                return bool(value)
            raise FieldError(self.name, value, self.allowed())
        if self.kind == "tuple":
            if not isinstance(value, tuple | list) or len(value) != len(self.items):
                raise FieldError(self.name, value, self.allowed())
            try:
                return tuple(s.check(v) for s, v in zip(self.items, value, strict=True))
            except FieldError:
                raise FieldError(self.name, value, self.allowed()) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(self.name, value, self.allowed())
        try:
            x = float(value)
        except OverflowError:  # an int past a float's range
            raise FieldError(self.name, value, self.allowed()) from None
        if not math.isfinite(x):
            raise FieldError(self.name, value, self.allowed())
        if self.kind == "int" and x != int(x):
            raise FieldError(self.name, value, self.allowed())
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            raise FieldError(self.name, value, self.allowed())
        if self.high is not None and (x >= self.high if self.high_open else x > self.high):
            raise FieldError(self.name, value, self.allowed())
        return int(x) if self.kind == "int" else x

    def parse(self, text: str) -> Any:
        """Check a value typed by a person ("3e-4", "true", "0.9, 0.999"); an error names
        the field, what was typed and what is allowed."""
        try:
            value = parse_text(text)
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}; allowed: {self.allowed()}") from None
        return self.check(value)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        for key in ("low", "high", "note"):
            if getattr(self, key) not in (None, ""):
                d[key] = getattr(self, key)
        if self.low_open:
            d["low_open"] = True
        if self.high_open:
            d["high_open"] = True
        if self.items:
            d["items"] = [s.to_json() for s in self.items]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FieldSpec:
        return cls(
            name=str(d["name"]),
            kind=d["kind"],
            low=d.get("low"),
            low_open=bool(d.get("low_open", False)),
            high=d.get("high"),
            high_open=bool(d.get("high_open", False)),
            items=tuple(cls.from_json(i) for i in d.get("items", ())),
            note=str(d.get("note", "")),
        )


def parse_text(text: str) -> Any:
    """Turn a typed value into a JSON-able one: bool, number, or tuple of numbers.

    Numbers are written the plain way (``3e-4``, ``-2``, ``0.5``): no ``1_0``, no
    ``nan`` or ``inf``, no digits from other scripts, and nothing a float64 would
    turn into 0 or infinity. Raises ValueError when the text is none of those.
    """
    t = text.strip()
    low = t.lower()
    if low in ("true", "on", "yes"):
        return True
    if low in ("false", "off", "no"):
        return False
    if t.startswith(("(", "[")) and t.endswith((")", "]")):
        t = t[1:-1]
    if "," in t:
        parts = [p.strip() for p in t.split(",")]
        if any(not p for p in parts):
            raise ValueError(f"{text!r}: a list of numbers has an empty element")
        try:
            return tuple(parse_number(p) for p in parts)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a list of numbers: {exc}") from None
    try:
        return parse_number(t)
    except ValueError as exc:
        raise ValueError(
            f"{text!r} is not a number, true/false or a list of numbers ({exc})"
        ) from None


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_number(t: str) -> int | float:
    """A number written the plain way; ValueError with the reason otherwise."""
    if _INT.fullmatch(t):
        if len(t.lstrip("+-")) > 30:
            raise ValueError(f"{len(t.lstrip('+-'))} digits is out of range")
        return int(t)
    if not _FLOAT.fullmatch(t):
        raise ValueError("use digits, a point and an exponent, e.g. 3e-4")
    return float64(t)


def float64(text: str) -> float:
    """A well-formed decimal as a float64, or ValueError: out of range, or so small that
    it would silently become 0 (``1e-400``)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a float64")
    if value == 0.0 and re.search(r"[1-9]", re.split(r"[eE]", text)[0]):
        raise ValueError(f"{text} is too small for a float64: it would become 0")
    return value


def group_ref(text: str) -> int | str:
    """A ``--group`` value: an index when it is written in ASCII digits, else a name."""
    return int(text) if _INT.fullmatch(text) and text.isascii() and text[0] not in "+-" else text
