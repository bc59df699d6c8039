"""``optitui ls``: the runs under a root, newest first, one line each."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from optitui.cli.common import age

#: runs listed without --all
NEWEST = 20


def add_parser(sub: Any) -> None:
    ls = sub.add_parser(
        "ls",
        help="list runs, newest first, with state, step, last loss, steps/s and age",
        description="Runs under --root, newest first. steps/s is the current speed of a "
        "running job and the run's average for one that is over; AGE is the time since "
        f"its last record. Only the {NEWEST} newest are listed unless --all.",
    )
    ls.add_argument("--root", type=Path, default=Path("runs"), help="where runs are (./runs)")
    ls.add_argument(
        "--all", action="store_true", help=f"list every run, not only the {NEWEST} newest"
    )


def _speed(status: Any, meta: dict[str, Any]) -> str:
    """The job's own speed while it runs; the run's average once it is over."""
    from optitui.tui import fmt

    if status.state == "running":
        return fmt.rate(status.steps_per_s)
    if status.state in ("paused", "starting", "lr-find"):
        return "–"
    start, end = meta.get("start"), status.last_record
    if isinstance(start, int | float) and end is not None and end > start and status.step > 0:
        return "avg " + fmt.rate(status.step / (end - start))
    return "–"


def row(paths: Any, now: float) -> tuple[str, ...]:
    """One run's line: RUN STATE STEP LOSS STEPS/S AGE SCRIPT."""
    from optitui.store.reader import open_reader

    try:
        with open_reader(paths.root) as r:
            st = r.status(now=now)
            loss = r.last_loss()
            meta = r.meta()
            script = Path(str(meta.get("script", "?"))).name
            return (
                paths.root.name,
                st.state,
                f"{st.step:,}",
                "-" if loss is None else f"{loss:.4g}",
                _speed(st, meta),
                age(now - (st.last_record or st.heartbeat)),
                script,
            )
    except Exception as exc:  # one bad store costs one line
        return (paths.root.name, "unreadable", "-", "-", "-", "-", str(exc)[:40])


def main(args: argparse.Namespace) -> int:
    from optitui.store.layout import find_runs

    runs = list(reversed(find_runs(args.root)))  # newest first
    if not runs:
        print(f"no runs under {args.root}/")
        return 0
    now = time.time()
    shown = runs if args.all else runs[:NEWEST]
    table: list[tuple[str, ...]] = [("RUN", "STATE", "STEP", "LOSS", "STEPS/S", "AGE", "SCRIPT")]
    table += [row(paths, now) for paths in shown]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    if len(shown) < len(runs):
        print(f"… and {len(runs) - len(shown)} older; `optitui ls --all` lists every run")
    return 0
