"""A finished surface race as plain data: each candidate's path, and the standings per step.

What ``--json`` prints and what the screen animates; made by
:mod:`optitui.trainer.control.surface_race`, read without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from optitui.surface.functions import SURFACES, Point, Surface


@dataclass(frozen=True)
class Racer:
    """One candidate's run: where it went from the start, step by step."""

    name: str
    candidate: str  # the candidate as typed (or as the default set spells it)
    optimizer: str  # the torch.optim class
    #: the fields that differ from the class's own defaults (lr always), as the race ran them
    changed: dict[str, Any]
    settings: dict[str, Any]  # the whole param group, as the race ran it
    path: tuple[Point, ...]  # path[0] is the start, path[t] the point after step t
    #: the step that left the finite numbers (its point is not in ``path``), or None
    diverged_at: int | None = None

    def point(self, step: int) -> Point:
        """Where the racer was after ``step`` steps (its last point once it stopped)."""
        return self.path[min(step, len(self.path) - 1)]

    def diverged_by(self, step: int) -> bool:
        return self.diverged_at is not None and step >= self.diverged_at

    def describe(self) -> str:
        """The class and what was changed, e.g. ``SGD lr=0.0008 momentum=0.9``."""
        words = [self.optimizer]
        for key, value in self.changed.items():
            if value is True:
                words.append(key)
            elif isinstance(value, list | tuple):
                words.append(f"{key}={','.join(f'{v:g}' for v in value)}")
            else:
                words.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
        return " ".join(words)


@dataclass(frozen=True)
class Standing:
    """A racer's place after some step."""

    index: int  # into SurfaceRace.racers
    point: Point
    distance: float  # to the nearest global minimum
    value: float  # f at the point
    diverged: bool


@dataclass(frozen=True)
class SurfaceRace:
    """Every racer from one start on one surface, for ``steps`` steps."""

    surface: Surface
    start: Point
    steps: int
    dtype: str
    racers: tuple[Racer, ...]

    def standings(self, step: int) -> list[Standing]:
        """The racers after ``step`` steps, nearest to the minimum first; diverged ones
        last, in the order they left."""
        rows = []
        for i, r in enumerate(self.racers):
            x, y = r.point(step)
            rows.append(
                Standing(i, (x, y), self.surface.distance(x, y), _value(self.surface, x, y), False)
                if not r.diverged_by(step)
                else Standing(i, (x, y), math.inf, math.inf, True)
            )

        def key(s: Standing) -> tuple[float, float, int]:
            left = self.racers[s.index].diverged_at
            return (s.distance, -(left or 0), s.index)

        return sorted(rows, key=key)

    def to_json(self) -> dict[str, Any]:
        s = self.surface
        return {
            "surface": s.name,
            "formula": s.formula,
            "minima": [list(m) for m in s.minima],
            "start": list(self.start),
            "steps": self.steps,
            "dtype": self.dtype,
            "candidates": [
                {
                    "name": r.name,
                    "candidate": r.candidate,
                    "optimizer": r.optimizer,
                    "changed": r.changed,
                    "settings": r.settings,
                    "diverged_at": r.diverged_at,
                    "path": [list(p) for p in r.path],
                    "distance": [s.distance(x, y) for x, y in r.path],
                    # JSON has no infinity: a value past the floats is null
                    "f": [_finite(_value(s, x, y)) for x, y in r.path],
                }
                for r in self.racers
            ],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SurfaceRace:
        """The race ``to_json`` wrote (for a screen drawn from a saved race)."""
        racers = tuple(
            Racer(
                name=c["name"],
                candidate=c["candidate"],
                optimizer=c["optimizer"],
                changed=dict(c["changed"]),
                settings=dict(c["settings"]),
                path=tuple((float(x), float(y)) for x, y in c["path"]),
                diverged_at=c.get("diverged_at"),
            )
            for c in obj["candidates"]
        )
        start = obj["start"]
        return cls(
            SURFACES[obj["surface"]],
            (float(start[0]), float(start[1])),
            int(obj["steps"]),
            str(obj["dtype"]),
            racers,
        )


def _value(surface: Surface, x: float, y: float) -> float:
    try:
        return surface.value(x, y)
    except OverflowError:  # a point far out, where x**4 leaves the floats
        return math.inf


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
