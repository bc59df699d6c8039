"""Training speed from the steps' own wall times, and the ETA.

The job's own figure (steps between two flushes over the time between them)
jumps after a pause or a range test, whose time it counts; the recorded wall
time of every step does not lie, so viewers measure over it. One definition
for the dashboard's status bar, the headless progress lines and
``optitui status``: steps per second over the steps recorded within a window
of the newest one's time, the shown rate over :data:`WINDOW_S`, the ETA over
the steadier :data:`ETA_WINDOW_S`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

#: seconds of recent steps behind the shown steps/s
WINDOW_S = 10.0
#: seconds of recent steps behind the ETA (steadier than the shown rate)
ETA_WINDOW_S = 60.0


def rate_over(t: Sequence[float], n: int, window: float) -> float | None:
    """Steps per second over the first ``n`` steps' wall times ``t`` (in order) that lie
    within ``window`` seconds of the newest; at least the last two count."""
    if n < 2:
        return None
    end = t[n - 1]
    first = min(bisect_left(t, end - window, 0, n - 1), n - 2)
    span = end - t[first]
    return (n - 1 - first) / span if span > 0 else None


def eta(step: int, total: int | None, rate: float | None) -> float | None:
    """Seconds until step ``total`` at ``rate`` steps/s; None when either is unknown."""
    if total is None or rate is None or not rate > 0:
        return None
    return max(0, total - step) / rate


class Pace:
    """:func:`rate_over` for a reader that gets the steps a batch at a time and keeps
    only the last :data:`ETA_WINDOW_S` of them: per batch, its newest step's time
    and its index among the steps trained so far.

    Steps are counted as trained, so a restore (the step number going back) does not
    look like negative progress."""

    def __init__(self) -> None:
        self._times: list[float] = []
        self._index: list[int] = []
        self._seen = 0

    def add(self, times: Sequence[float]) -> None:
        """The wall times of the steps recorded since the last call, in order."""
        if not times:
            return
        if not self._times:  # measuring starts at the first step
            self._times.append(times[0])
            self._index.append(0)
        self._seen += len(times)
        self._times.append(times[-1])
        self._index.append(self._seen - 1)
        # forget what is older than the ETA's window, but keep one sample before it
        old = bisect_left(self._times, times[-1] - ETA_WINDOW_S) - 1
        if old > 0:
            del self._times[:old], self._index[:old]

    def rate(self, window: float = WINDOW_S) -> float | None:
        """Steps per second over the batches within ``window`` s of the newest."""
        n = len(self._times)
        if n < 2:
            return None
        end = self._times[-1]
        first = min(bisect_left(self._times, end - window, 0, n - 1), n - 2)
        span = end - self._times[first]
        return (self._index[-1] - self._index[first]) / span if span > 0 else None
