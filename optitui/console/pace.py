"""Steps per second smoothed over wall time, and the time left to a step count.

One estimator for every place that shows a pace or an ETA (headless progress
lines, ``optitui status``): each sample ``(time, step)`` moves an exponential
moving average of the rate by a weight that grows with the time the sample
covers (time constant ``tau``), so one slow flush does not swing the ETA, and
a change of pace shows within about ``tau`` seconds.
"""

from __future__ import annotations

import math


class Pace:
    """Feed it ``add(time, step)`` as records arrive; read :attr:`rate` and :meth:`eta`."""

    def __init__(self, tau: float = 30.0) -> None:
        if not tau > 0:
            raise ValueError(f"tau must be > 0 seconds, got {tau}")
        self.tau = tau
        self.rate: float | None = None
        self._base: tuple[float, int] | None = None

    def add(self, t: float, step: int) -> None:
        """A step count seen at wall time ``t``. A step count that went back (a restore)
        keeps the rate and measures on from there."""
        base = self._base
        if base is None or step < base[1]:
            self._base = (t, step)
            return
        dt = t - base[0]
        if dt <= 0:
            return  # same instant: the steps count towards the next sample
        now = (step - base[1]) / dt
        weight = 1.0 - math.exp(-dt / self.tau)
        self.rate = now if self.rate is None else self.rate + weight * (now - self.rate)
        self._base = (t, step)

    def hold(self) -> None:
        """Time stops counting (paused): the next sample starts a fresh interval."""
        self._base = None

    def eta(self, step: int, total: int | None) -> float | None:
        """Seconds until ``total`` steps at the current rate; None when unknown."""
        if total is None or self.rate is None or not self.rate > 0:
            return None
        return max(0, total - step) / self.rate
