"""The race's test functions: the classic pictures of how optimizers move.

Each formula is written once, with Python operators and ``ops.cos``, so the same
text computes a float (``ops`` = :mod:`math`, for the contour) and a tensor with
gradients (``ops`` = :mod:`torch`, for the race).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Point = tuple[float, float]


def rosenbrock(x: Any, y: Any, ops: Any) -> Any:
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def beale(x: Any, y: Any, ops: Any) -> Any:
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def saddle(x: Any, y: Any, ops: Any) -> Any:
    return x**2 - y**2 + y**4 / 4


def rastrigin(x: Any, y: Any, ops: Any) -> Any:
    return 20 + (x**2 - 10 * ops.cos(2 * math.pi * x)) + (y**2 - 10 * ops.cos(2 * math.pi * y))


@dataclass(frozen=True)
class Surface:
    """A 2D function to race on, with where to start, where to look and what lrs suit it."""

    name: str
    formula: str  # as a person reads it
    about: str  # what the race on it shows
    f: Callable[[Any, Any, Any], Any]
    minima: tuple[Point, ...]  # the global minima (distances are to the nearest)
    where: str  # the minima as a person writes them
    start: Point
    view: tuple[float, float, float, float]  # x_min, x_max, y_min, y_max of the picture
    steps: int  # a race long enough to tell the candidates apart
    #: an lr per torch.optim class, tuned so each moves visibly within ``steps``
    lrs: Mapping[str, float]

    def value(self, x: float, y: float) -> float:
        return float(self.f(x, y, math))

    def distance(self, x: float, y: float) -> float:
        """Euclidean distance to the nearest global minimum."""
        return min(math.hypot(x - mx, y - my) for mx, my in self.minima)

    @property
    def low(self) -> float:
        """The function's value at its minima."""
        return self.value(*self.minima[0])


def _lrs(sgd: float, adaptive: float, **own: float) -> dict[str, float]:
    """SGD-like classes at ``sgd``, the per-coordinate adaptive ones at ``adaptive``."""
    out = {"SGD": sgd, "ASGD": sgd, "Rprop": 0.01, "Adadelta": 1.0}
    for name in ("RMSprop", "Adam", "AdamW", "NAdam", "RAdam", "Adamax", "Adagrad"):
        out[name] = adaptive
    return out | own


SURFACES: dict[str, Surface] = {
    s.name: s
    for s in (
        Surface(
            "rosenbrock",
            "(1 - x)² + 100·(y - x²)²",
            "a long curved valley: easy to reach, slow to follow to (1, 1)",
            rosenbrock,
            minima=((1.0, 1.0),),
            where="(1, 1)",
            start=(-2.0, 2.0),
            view=(-2.5, 2.0, -1.0, 3.5),
            steps=500,
            # RAdam's first steps are plain momentum SGD on gradients of ~1600 here
            lrs=_lrs(8e-4, 0.3, RMSprop=0.1, RAdam=1e-3),
        ),
        Surface(
            "beale",
            "(1.5 - x + xy)² + (2.25 - x + xy²)² + (2.625 - x + xy³)²",
            "flat plateaus and steep walls around (3, 0.5)",
            beale,
            minima=((3.0, 0.5),),
            where="(3, 0.5)",
            start=(1.0, 1.5),
            view=(-1.0, 4.0, -1.5, 2.5),
            steps=300,
            lrs=_lrs(3e-3, 0.1, RAdam=0.01, Adagrad=0.3),
        ),
        Surface(
            "saddle",
            "x² - y² + y⁴/4",
            "a saddle at (0, 0) between minima at (0, ±√2): who escapes, and how fast",
            saddle,
            minima=((0.0, math.sqrt(2)), (0.0, -math.sqrt(2))),
            where="(0, ±√2)",
            start=(-1.5, 0.01),
            view=(-2.0, 2.0, -2.0, 2.0),
            steps=200,
            lrs=_lrs(0.01, 0.03, Adagrad=0.1),
        ),
        Surface(
            "rastrigin",
            "20 + x² - 10·cos(2πx) + y² - 10·cos(2πy)",
            "a field of local minima around (0, 0): who gets stuck where",
            rastrigin,
            minima=((0.0, 0.0),),
            where="(0, 0)",
            start=(-2.0, 3.5),
            view=(-4.5, 4.5, -4.5, 4.5),
            steps=300,
            lrs=_lrs(3e-3, 0.3),
        ),
    )
}

#: the race when no candidate is named: (name, candidate) in the order of the classic pictures
DEFAULT_SET: tuple[tuple[str, str], ...] = (
    ("SGD", "optimizer=SGD"),
    ("Momentum", "optimizer=SGD,momentum=0.9"),
    ("Nesterov", "optimizer=SGD,momentum=0.9,nesterov=true"),
    ("RMSprop", "optimizer=RMSprop"),
    ("Adam", "optimizer=Adam"),
    ("AdamW", "optimizer=AdamW"),
    ("RAdam", "optimizer=RAdam"),
    ("NAdam", "optimizer=NAdam"),
    ("Adagrad", "optimizer=Adagrad"),
)
