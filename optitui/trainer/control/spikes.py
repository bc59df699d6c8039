"""Loss spikes: a warning when the loss jumps well above where it has been, once per episode.

The loss now is the median of the last :data:`RECENT` losses, so one bad batch is not a
spike (a loss that stays up for a few steps is). Where it has been is the median of the
:data:`WINDOW` losses before the current batch, and its noise the spread of those
around their median (the median absolute deviation, robust to heavy tails). A spike is
the loss now above ``factor`` times that level *and* more than :data:`NOISE` noise
widths above it, so the heavy-tailed noise of a converged run (losses from 1e-4 to
1e-2 around 5e-4) is not one. It re-arms once the loss is back within :data:`BACK`
widths of the level (the level follows a loss that stays up): one warning per
episode. The level is taken once per flushed batch, not per step.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from itertools import repeat
from operator import sub

RECENT = 9  # the loss now: the median of this many (odd: one middle value)
WINDOW = 256  # where it has been: this many before the batch
WARMUP = 50  # losses before a level means anything
NOISE = 8.0  # a spike is this many noise widths above the level
BACK = 3.0  # and is over once within this many
MAD_TO_SIGMA = 1.4826  # the median absolute deviation of a normal noise, in its sigmas


def _median(xs: list[float]) -> float:
    """statistics.median of sorted values, without its checks (this runs every flush)."""
    n = len(xs)
    mid = n // 2
    return xs[mid] if n % 2 else (xs[mid - 1] + xs[mid]) / 2


@dataclass(frozen=True)
class Spike:
    step: int
    loss: float  # the median of the recent losses
    level: float


class SpikeWatch:
    """Fed every flushed batch of (step, loss); returns the spikes that began in it."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.reset()

    def reset(self) -> None:
        self._history: deque[float] = deque(maxlen=WINDOW)
        self._recent: deque[float] = deque(maxlen=RECENT)
        self.spiking = False

    def _level(self) -> tuple[float, float] | None:
        if len(self._history) < WARMUP:
            return None
        ordered = sorted(self._history)
        level = _median(ordered)
        # taken in sorted order, the deviations fall then rise: two runs, which the sort
        # merges in one pass instead of sorting the whole window again
        mad = _median(sorted(map(abs, map(sub, ordered, repeat(level)))))  # (C loops)
        return level, MAD_TO_SIGMA * mad

    def feed(self, points: list[tuple[float, float]]) -> list[Spike]:
        out: list[Spike] = []
        found = self._level()
        if found is not None and not self.spiking and self._calm(points, *found):
            xs = [x for _, x in points if math.isfinite(x)]
            self._recent.extend(xs)
            self._history.extend(xs)
            return out
        for step, x in points:
            if not math.isfinite(x):
                continue
            self._recent.append(x)
            self._history.append(x)
            if found is None or len(self._recent) < RECENT:
                continue
            level, noise = found
            now = sorted(self._recent)[RECENT // 2]  # RECENT is odd: the middle one
            above = now > level + NOISE * noise and (level <= 0 or now > self.factor * level)
            if not self.spiking and above:
                self.spiking = True
                out.append(Spike(int(step), now, level))
            elif self.spiking and now < level + BACK * noise:
                self.spiking = False
        return out

    def _calm(self, points: list[tuple[float, float]], level: float, noise: float) -> bool:
        """Whether no step of ``points`` can start a spike: a median of RECENT values is
        above the bar only when more than half of them are, so fewer than that above it
        among the last losses and these means none (and the batch is taken whole)."""
        bar = level + NOISE * noise
        if level > 0:
            bar = max(bar, self.factor * level)
        above = sum(1 for x in self._recent if x > bar) + sum(1 for _, x in points if x > bar)
        return above <= RECENT // 2
