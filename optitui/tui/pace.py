"""How often the dashboard reads a run it follows: every poll interval when that is cheap,
less often when following costs more than the viewer's share of one core.

A live job writes a few times a second, so every read brings something: new steps for
the status bar, the plots, the group table. What a read and what follows it costs (the
read, the screen's update, the frames) depends on the history, the terminal and the
machine. :class:`Pace` measures it as the CPU time of the threads that do it (the UI
thread, and each thread that reads a run) between two updates, and stretches the wait
before the next read so that the viewer stays within its budget, never waiting longer
than ``longest``: the newest step is then at most about a second old on screen, and a
cheap viewer still reads four times a second. Other threads of the process (a training
loop run ``--inline``) are not the viewer's cost and are not counted.
"""

from __future__ import annotations

import threading
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
    #: the calling thread's CPU time
    clock: Callable[[], float] = field(default=time.thread_time)
    _ui: float | None = None
    _readers: dict[int, float] = field(default_factory=dict)  # each reading thread's clock
    _reading: float = 0.0  # what reading threads spent since the last update
    _wait: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.longest = max(self.longest, self.interval)

    def updated(self) -> None:
        """An update was handled (on the UI thread): what the UI thread and the readers
        spent since the previous one sets the next wait (spending over the wait and the
        work is then the budget)."""
        now = self.clock()
        with self._lock:
            reading, self._reading = self._reading, 0.0
        if self._ui is not None:
            spent = max(now - self._ui, 0.0) + reading
            self._wait = min(self.longest, max(self.interval, spent / self.budget))
        self._ui = now

    def wait(self) -> float:
        """Seconds until the next read, asked once per read by the thread that reads (its
        CPU time since it last asked counts as the viewer's). Before two updates were
        measured, the longest: the first reads bring whole histories, and what they leave
        to the next (:meth:`History.refine`) waits for the first frame."""
        now, me = self.clock(), threading.get_ident()
        with self._lock:
            last = self._readers.get(me)
            if last is not None:
                self._reading += max(now - last, 0.0)
            self._readers[me] = now
        return self.next_wait

    @property
    def next_wait(self) -> float:
        """The wait :meth:`wait` gives now (asking it here counts nothing)."""
        return self.longest if self._wait is None else self._wait
