"""Turning a window of history into at most a few points per plot column.

Every function here costs O(buckets x pyramid depth), not O(window length):
that is what keeps a frame at a million steps as cheap as at a thousand.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from optitui.tui.history import HistoryView
from optitui.tui.pyramid import FACTOR, FIRST, PyramidView


@dataclass
class Points:
    """x and y lists for one plotted series."""

    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)

    def add(self, x: float, y: float, positive: bool) -> None:
        if math.isfinite(y) and (y > 0.0 or not positive):
            self.xs.append(x)
            self.ys.append(y)

    def __len__(self) -> int:
        return len(self.xs)

    def flat_runs_joined(self) -> Points:
        """The same line with the inner points of equal-y runs dropped.

        A constant lr is then two points instead of one per column: plotext's
        cost grows with points, and a straight segment draws the same pixels.
        """
        xs, ys = self.xs, self.ys
        if len(xs) < 3:
            return self
        out = Points([xs[0]], [ys[0]])
        for i in range(1, len(xs) - 1):
            if not ys[i - 1] == ys[i] == ys[i + 1]:
                out.xs.append(xs[i])
                out.ys.append(ys[i])
        out.xs.append(xs[-1])
        out.ys.append(ys[-1])
        return out


def window(view: HistoryView, last: int | None) -> tuple[int, int]:
    """Row range [start, stop) of the last ``last`` rows, or of all rows when None."""
    n = view.length
    return (0 if last is None else max(0, n - last)), n


def _bounds(start: int, stop: int, buckets: int) -> list[int]:
    """Bucket edges from start to stop; inner edges fall on pyramid block boundaries.

    Aligned edges let each bucket's min/max come from whole blocks of one
    pyramid level (and the smoothed loss from a stored block state), which
    keeps a frame's cost flat however long the window is. Moving an edge by
    less than half a bucket is invisible at one bucket per plot column.
    """
    count = stop - start
    if count <= buckets:
        return list(range(start, stop + 1))
    align, block = 1, FIRST
    while block * 2 <= count // buckets:
        align, block = block, block * FACTOR
    inner = [(start + count * i // buckets) // align * align for i in range(1, buckets)]
    edges = [start, *(e for e in inner if start < e < stop), stop]
    return sorted(set(edges))


def minmax(
    x: array[float], col: PyramidView, start: int, stop: int, buckets: int, positive: bool = False
) -> Points:
    """Min and max of each bucket, placed at the bucket's last x (one point when equal)."""
    out = Points()
    stop = min(stop, col.length)
    b = _bounds(start, stop, max(1, buckets))
    for s, e in pairwise(b):
        lo, hi = col.minmax(s, e)
        xe = x[e - 1]
        if positive and lo <= 0.0 < hi:  # a log axis cannot show <= 0: keep what it can
            lo = _positive_min(col.raw, s, e)
        out.add(xe, lo, positive)
        if hi != lo:
            out.add(xe, hi, positive)
    return out


def _positive_min(raw: array[float], s: int, e: int) -> float:
    if e - s > 4096:  # too long to scan each frame; the max still shows
        return math.nan
    return min((v for v in raw[s:e] if v > 0.0), default=math.nan)


def last(
    x: array[float],
    value_at: Callable[[int], float],
    start: int,
    stop: int,
    buckets: int,
    positive: bool = False,
) -> Points:
    """The value at the end of each bucket: for smooth or sparse series (EMA, validation)."""
    out = Points()
    stop = min(stop, len(x))
    b = _bounds(start, stop, max(1, buckets))
    for e in b[1:]:
        out.add(x[e - 1], value_at(e - 1), positive)
    return out


def segments(start: int, stop: int, breaks: tuple[int, ...]) -> list[tuple[int, int]]:
    """[start, stop) cut at the rows where a branch starts; each piece has rising steps."""
    cuts = [b for b in breaks if start < b < stop]
    edges = [start, *cuts, stop]
    return [(a, b) for a, b in pairwise(edges) if b > a]


def abandoned(x: array[float], pieces: Sequence[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """Each piece (start, stop) of rising steps, split where a later piece went back to.

    A restore rewinds to an earlier step: from there on, the older piece's rows
    are a path the run left (True); its rows before that step are history the
    newer piece shares (False). Empty parts are dropped.
    """
    out: list[tuple[int, int, bool]] = []
    later = math.inf  # the lowest step any later piece starts from
    for a, b in reversed(pieces):
        cut = b if later == math.inf else bisect_left(x, later, a, b)
        out += [(p, q, left) for p, q, left in ((cut, b, True), (a, cut, False)) if q > p]
        later = min(later, x[a])
    return out[::-1]


def x_range(x: array[float], pieces: Sequence[tuple[int, ...]]) -> tuple[float, float]:
    """The smallest and largest step over pieces (start, stop, ...) whose steps rise."""
    return min(x[p[0]] for p in pieces), max(x[p[1] - 1] for p in pieces)


def val_ranges(view: HistoryView, x_lo: float, x_hi: float) -> list[tuple[int, int]]:
    """Per branch of the validation records, the indices with x_lo <= step <= x_hi."""
    out = []
    steps = view.val_step
    for a, b in segments(0, view.val_length, view.val_breaks):
        lo = bisect_left(steps, x_lo, a, b)
        hi = bisect_right(steps, x_hi, lo, b)
        if hi > lo:
            out.append((lo, hi))
    return out
