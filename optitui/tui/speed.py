"""Training speed from the steps' own wall times: windowed, smoothed for the ETA, and the
run's average.

The windows and the rate are defined once, in :mod:`optitui.console.pace`, for the
status bar, the headless progress lines and ``optitui status`` alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from optitui.console.pace import ETA_WINDOW_S, WINDOW_S, rate_over
from optitui.tui.history import HistoryView


@dataclass(frozen=True)
class Speed:
    """Steps per second: over the last WINDOW_S, over the last ETA_WINDOW_S, and the run's
    average (first to last recorded step); None where the history cannot tell."""

    recent: float | None = None
    steady: float | None = None
    average: float | None = None


def speed(view: HistoryView) -> Speed:
    """The speeds of a run's history (rows are steps trained, in wall-time order)."""
    n = min(view.length, len(view.time))
    if n < 2:
        return Speed()
    t = view.time
    total = t[n - 1] - t[0]
    return Speed(
        recent=rate_over(t, n, WINDOW_S),
        steady=rate_over(t, n, ETA_WINDOW_S),
        average=(n - 1) / total if total > 0 else None,
    )
