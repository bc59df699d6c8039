"""The viewer's settings: one typed object shared by the CLI, the app and the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ViewerSettings:
    """How the dashboard reads, draws and steers."""

    fine_factor: float = 1.1
    """``+`` multiplies the selected group's lr by this, ``-`` divides by it."""
    coarse_factor: float = 2.0
    """``*`` multiplies the lr by this, ``/`` divides by it."""
    window: int = 2000
    """Steps shown when the window is "last N" (``w`` toggles last N / all)."""
    ema_beta: float = 0.98
    """Smoothing of the loss curve: the weight of the past in the bias-corrected EMA."""
    poll_interval: float = 0.25
    """Seconds between reads of the run store, at the shortest."""
    cpu_budget: float = 0.04
    """The share of one core the dashboard spends following a live run: when reading
    and drawing cost more, reads come further apart (at least one a second)."""
    first_read_wait: float = 1.0
    """Seconds the dashboard waits as it opens for the history read while Textual started
    (the steered run's and the overlaid runs', together): a read done by then is in the
    first frame, with no frame of empty plots before it; a longer one is drawn when it
    ends."""
    redraw_hz: float = 4.0
    """Plot redraws per second at most; data arrives on its own clock."""
    log_y: bool | None = None
    """A logarithmic (True) or linear (False) loss axis; None: logarithmic while the loss
    in view spans more than two decades (**l** picks one for the session)."""
    show_all: bool = True
    """Start with the whole history in view (else the last ``window`` steps)."""
    bell: bool = True
    """Ring the terminal bell once when the run needs the user: it paused itself, failed,
    died or finished (``--no-bell`` turns it off)."""
    clock: Callable[[], float] = field(default=time.time)
    """Wall clock for ages and ETAs; tests pass a fixed one."""
    pinned: str | None = None
    """The metric drawn under the loss plot (``--pin NAME``; **u** on the metrics screen
    picks another, or none)."""
    runs_root: Path | None = None
    """Where the runs browser (``b``) looks for runs, besides the steered run's own folder
    (``--root``)."""

    def __post_init__(self) -> None:
        if not self.fine_factor > 1.0 or not self.coarse_factor > 1.0:
            raise ValueError("lr factors must be > 1")
        if self.window < 10:
            raise ValueError(f"window must be at least 10 steps, got {self.window}")
        if not 0.0 < self.cpu_budget <= 1.0:
            raise ValueError(f"cpu_budget must be in (0, 1], got {self.cpu_budget}")
        if not 0.0 <= self.first_read_wait <= 10.0:
            raise ValueError(f"first_read_wait must be in [0, 10], got {self.first_read_wait}")
        if not 0.0 < self.redraw_hz <= 30.0:
            raise ValueError(f"redraw_hz must be in (0, 30], got {self.redraw_hz}")
