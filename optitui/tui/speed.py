"""Training speed from the steps' own wall times: windowed, smoothed for the ETA, and the
run's average.

The job's own figure (steps between two flushes over the time between them)
jumps after a pause or a range test, whose time it counts; the recorded
wall time of every step does not lie, so the viewer measures over it.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass

from optitui.tui.history import HistoryView

#: seconds of recent steps behind the shown steps/s
WINDOW_S = 10.0
#: seconds of recent steps behind the ETA (steadier than the shown rate)
ETA_WINDOW_S = 60.0


@dataclass(frozen=True)
class Speed:
    """Steps per second: over the last WINDOW_S, over the last ETA_WINDOW_S, and the run's
    average (first to last recorded step); None where the history cannot tell."""

    recent: float | None = None
    steady: float | None = None
    average: float | None = None


def _rate(t: array[float], n: int, window: float) -> float | None:
    """Rows per second over the rows whose time is within ``window`` of the newest one."""
    end = t[n - 1]
    first = min(bisect_left(t, end - window, 0, n - 1), n - 2)  # at least the last two rows
    span = end - t[first]
    return (n - 1 - first) / span if span > 0 else None


def speed(view: HistoryView) -> Speed:
    """The speeds of a run's history (rows are steps trained, in wall-time order)."""
    n = min(view.length, len(view.time))
    if n < 2:
        return Speed()
    t = view.time
    total = t[n - 1] - t[0]
    return Speed(
        recent=_rate(t, n, WINDOW_S),
        steady=_rate(t, n, ETA_WINDOW_S),
        average=(n - 1) / total if total > 0 else None,
    )
