"""The y axis of a plot: its range and labelled ticks, on a linear or a log scale.

Log axes are drawn by plotting log10 of the values on a linear axis with the
ticks labelled in the values' own units: plotext's own log scale turns
its labels upside down when every value is equal (a constant lr), and a flat
series here gets a range around its value instead of a zero-height one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: a flat series gets this much room either side (a fraction of its value on a linear
#: axis; decades on a log axis)
FLAT_PAD = 0.1
FLAT_PAD_DECADES = 0.5


@dataclass(frozen=True)
class Axis:
    """A y axis in plot coordinates (log10 of the values when ``log``)."""

    lo: float
    hi: float
    log: bool

    def to_plot(self, y: float) -> float:
        return math.log10(y) if self.log else y

    def ticks(self, rows: int) -> tuple[list[float], list[str]]:
        """(positions in plot coordinates, labels) of at most about rows / 2 ticks."""
        most = max(2, min(8, rows // 2))
        if self.log:
            found = _log_ticks(self.lo, self.hi, most)
            if len(found) < 3:  # less than a decade: round values, placed on the log scale
                values = _linear_ticks(10**self.lo, 10**self.hi, min(most, 5))
                if len(values) > len(found):
                    found = [math.log10(v) for v in values if v > 0]
            if len(found) >= 2:
                return found, labels([10**p for p in found])
        if not self.log:
            found = _linear_ticks(self.lo, self.hi, most)
            if len(found) >= 2:
                return found, labels(found)
        n = max(2, min(most, 5))
        pos = [self.lo + (self.hi - self.lo) * i / (n - 1) for i in range(n)]
        return pos, labels([10**p if self.log else p for p in pos])

    def rounded_down(self, rows: int) -> Axis:
        """The axis with its bottom moved down to the round value below it (a tick of
        the grid :meth:`ticks` draws): the lowest values in view (a loss's newest)
        then have a label beside them instead of a blank stretch under the last one."""
        most = max(2, min(8, rows // 2))
        if self.log and self.hi - self.lo >= 1.0:  # 1, 2 or 5 x 10^k: at most 0.3 decades
            k = math.floor(self.lo + 1e-9)
            for m in (5, 2, 1):
                if math.log10(m) + k <= self.lo + 1e-9:
                    return Axis(math.log10(m) + k, self.hi, True)
        if self.log:  # less than a decade: ticks are round values placed on the log scale
            lo, hi = 10**self.lo, 10**self.hi
            step = _linear_step(lo, hi, min(most, 5))
            new = math.floor(lo / step + 1e-9) * step if step else 0.0
            return Axis(math.log10(new), self.hi, True) if new > 0.0 else self
        step = _linear_step(self.lo, self.hi, most)
        return Axis(math.floor(self.lo / step + 1e-9) * step, self.hi, False) if step else self


def label(v: float) -> str:
    """A value in three significant digits, short (0.002, 1.5e-05, 2.41, 1.2e+03)."""
    return f"{v:.3g}"


def labels(values: Sequence[float]) -> list[str]:
    """Tick labels: three significant digits, or as many more as put each label within
    1% of the gap to its nearest tick (ticks close together read 2.295, 2.3, 2.305,
    never 2.29, 2.3, 2.31 at the wrong heights)."""
    out = []
    for i, v in enumerate(values):
        gaps = [abs(values[j] - v) for j in (i - 1, i + 1) if 0 <= j < len(values)]
        tolerance = 0.01 * min(gaps) if gaps else math.inf
        for digits in range(3, 18):
            text = f"{v:.{digits}g}"
            if abs(float(text) - v) <= tolerance:
                break
        out.append(text)
    return out


def axis_for(lo: float, hi: float, log: bool) -> Axis:
    """The axis over values lo..hi (lo > 0 when ``log``), padded when they are flat."""
    if log:
        a, b = math.log10(lo), math.log10(hi)
        if b - a < 1e-9:
            return Axis(a - FLAT_PAD_DECADES, b + FLAT_PAD_DECADES, True)
        return Axis(a, b, True)
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-300):
        pad = FLAT_PAD * abs(lo) if lo else 1.0
        return Axis(lo - pad, hi + pad, False)
    return Axis(lo, hi, False)


def _linear_step(lo: float, hi: float, most: int) -> float:
    """The round step (1, 2 or 5 x 10^k) that puts at most ``most`` ticks in [lo, hi];
    0 when there is none."""
    span = hi - lo
    if span <= 0:
        return 0.0
    base = 10.0 ** math.floor(math.log10(span / most))
    for mult in (1, 2, 5, 10, 20, 50):
        step = base * mult
        first = math.ceil(lo / step - 1e-9)
        count = math.floor(hi / step + 1e-9) - first + 1
        if count <= most:
            return step
    return 0.0


def _linear_ticks(lo: float, hi: float, most: int) -> list[float]:
    """Multiples of a round step (1, 2 or 5 x 10^k) inside [lo, hi], at most ``most``."""
    step = _linear_step(lo, hi, most)
    if not step:
        return []
    first = math.ceil(lo / step - 1e-9)
    count = math.floor(hi / step + 1e-9) - first + 1
    return [round((first + i) * step, 12) for i in range(count)]


def _log_ticks(lo: float, hi: float, most: int) -> list[float]:
    """log10 positions of 1, 2, 5 x 10^k inside [lo, hi]; fewer steps per decade (then
    fewer decades) until at most ``most`` remain."""
    first, last = math.floor(lo), math.ceil(hi)
    for mults in ((1, 2, 3, 5), (1, 2, 5), (1, 3), (1,)):
        found = [
            math.log10(m) + d
            for d in range(first, last + 1)
            for m in mults
            if lo - 1e-9 <= math.log10(m) + d <= hi + 1e-9
        ]
        if len(found) <= most:
            return found
    every = math.ceil(len(found) / most)
    return found[::every]
