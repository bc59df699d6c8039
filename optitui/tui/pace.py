"""How often the dashboard reads a run it follows: every poll interval when that is cheap,
less often when following costs more than the viewer's share of one core.

A live job writes a few times a second, so every read brings something: new steps for
the status bar, the plots, the group table. What a read and what follows it costs (the
read, the screen's update, the frames) depends on the history, the terminal and the
machine. :class:`Pace` measures it as the process's CPU time between two updates and
stretches the wait before the next read so that the whole viewer (every thread) stays
within its budget, never waiting longer than ``longest``: the newest step is then at
most about a second old on screen, and a cheap viewer still reads four times a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: the longest wait between two reads of a live run, whatever they cost
LONGEST_S = 1.0


@dataclass
class Pace:
    """The wait before the next read, from what the viewer spent since the last update."""

    interval: float  # the shortest wait (the settings' poll interval)
    budget: float  # the share of one core the viewer may spend following a run
    longest: float = LONGEST_S
    cpu: Callable[[], float] = field(default=time.process_time)
    _seen: float | None = None
    _wait: float | None = None

    def __post_init__(self) -> None:
        self.longest = max(self.longest, self.interval)

    def updated(self) -> None:
        """An update was handled: what the process spent since the previous one sets the
        next wait (its spending over the wait, plus the wait, is the budget)."""
        now = self.cpu()
        if self._seen is not None:
            spent = max(now - self._seen, 0.0)
            self._wait = min(self.longest, max(self.interval, spent / self.budget))
        self._seen = now

    def wait(self) -> float:
        """Seconds until the next read (read by the thread that follows the run). Before
        two updates were measured, the longest: the first reads bring whole histories,
        and what they leave to the next (:meth:`History.refine`) waits for the first frame."""
        return self.longest if self._wait is None else self._wait
