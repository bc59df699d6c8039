"""An optimizer race's curves: each candidate's smoothed loss against its steps, overlaid,
one colour per candidate (the table under it uses the same)."""

from __future__ import annotations

import math
from typing import Any

from optitui.store.reader import Race
from optitui.tui.widgets.drawn_plot import DrawnPlot

#: candidate i's colour (current first); rgb, so plotext and rich draw the same one
COLORS = (
    (230, 230, 230),
    (0, 215, 255),
    (255, 95, 175),
    (255, 215, 0),
    (95, 215, 95),
    (255, 135, 0),
    (135, 135, 255),
    (215, 95, 255),
    (0, 175, 135),
    (255, 95, 95),
    (175, 175, 0),
    (95, 175, 255),
    (175, 135, 95),
)


def color(i: int) -> str:
    """Candidate i's colour as rich writes it."""
    return "rgb({},{},{})".format(*COLORS[i % len(COLORS)])


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


#: a curve still running is drawn up to this many times the highest start; above it, it is
#: on its way to diverging and would squash the others
CAP = 5.0


def y_top(points: list[list[tuple[int, float]]], states: list[str]) -> float:
    """The top of the y axis: every candidate that has not diverged is drawn whole (a worse
    one is the answer the race gives, not noise); a diverged one is clipped there."""
    ys = [y for p in points for _, y in p]
    kept = [y for i, p in enumerate(points) if _state(states, i) != "diverged" for _, y in p]
    top = max(kept or ys)
    start = max(p[0][1] for p in points if p)
    return min(top, CAP * start) if start > 0 else top


def step_ticks(steps: int, most: int = 6) -> list[int]:
    """Whole steps for the x axis: 1, then the multiples of a round step (1, 2 or 5 x
    10^k) up to ``steps``, at most ``most`` in all (plotext's own read 13.2, 25.5, ...)."""
    base = 1
    while True:
        for step in (base, 2 * base, 5 * base):
            if steps // step <= most - 1:
                # a multiple right next to 1 would print over it
                return [1, *(n for n in range(step, steps + 1, step) if n - 1 >= step / 2)]
        base *= 10


def _state(states: list[str], i: int) -> str:
    return states[i] if i < len(states) else ""


class RacePlot(DrawnPlot):
    """Redrawn when a new read of the race arrives; the x axis spans the race's steps from
    the start, so each curve visibly grows across it."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.race: Race | None = None
        self.curves = 0  # candidates drawn in the last frame

    def show(self, race: Race | None) -> None:
        self.race = race
        self.redraw()

    def draw(self, plt: Any) -> None:
        race = self.race
        curves = [] if race is None else list(race.data.get("smoothed") or [])
        texts = [] if race is None else list(race.config.get("candidates") or [])
        points = [[(n, y) for n, y in enumerate(c, 1) if _finite(y)] for c in curves]
        self.curves = sum(1 for p in points if p)
        if race is None or not any(len(p) >= 2 for p in points):
            plt.title("smoothed loss against step · waiting for the first steps")
            return
        steps = int(race.config.get("steps") or max(len(p) for p in points))
        plt.title(f"smoothed loss against step · {len(texts)} candidates x {steps} steps")
        plt.xlim(1, max(2, steps))
        ticks = step_ticks(max(2, steps))
        plt.xticks(ticks, [str(t) for t in ticks])
        top = y_top(points, list(race.data.get("states") or []))
        low = min(y for p in points for _, y in p)
        if top > low:
            plt.ylim(low - 0.05 * (top - low), top)
        for i, pts in enumerate(points):
            if len(pts) < 2:
                continue
            ys = [min(y, top) for _, y in pts]
            # no plotext legend: it sits top left, over the curves' starts (the highest
            # losses); the screen's head names each colour instead
            plt.plot([n for n, _ in pts], ys, marker="braille", color=COLORS[i % len(COLORS)])
