"""What ``optitui run`` was asked for: the options every way of starting a job reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunOptions:
    script: Path
    device: str = "auto"
    root: Path = Path("runs")
    run_dir: Path | None = None
    max_steps: int | None = None
    seed: int | None = None
    argv: tuple[str, ...] = ()
    mode: str = "headless"
    resume: Path | None = None
    on_divergence: str | None = None
    sync_every: int | None = None
    health_every: int | None = None
    """Steps between optimizer health measurements (None: the Job's or the probe's own)."""
    dist_timeout: float = 120.0
    script_args: tuple[str, ...] = ()
    """What followed ``--`` on the command line: the script's own ``sys.argv[1:]``."""
    log_every: float | None = None
    """Seconds between progress lines (None: 30 in a log, a live line on a terminal; 0: off)."""
    quiet: bool = False
    """Print only the first and the last line."""
    events_shown: bool = False
    """A viewer shows the run's events (the dashboard's job): warnings are not printed."""
    no_terminal: bool = False
    """Headless because there is no terminal (not by choice): the first line says so."""
