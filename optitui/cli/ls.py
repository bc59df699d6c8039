"""``optitui ls``: the runs under a root, newest first, one line each."""

from __future__ import annotations

import argparse
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optitui.cli.common import age, err

#: runs listed without --all
NEWEST = 20


def add_parser(sub: Any) -> None:
    ls = sub.add_parser(
        "ls",
        help="list runs, newest first, with state, step, last loss, steps/s and age",
        description="Runs under --root, newest first. steps/s is the current speed of a "
        "running job and the run's average for one that is over; AGE is the time since "
        f"its last record. Only the {NEWEST} newest are listed unless --all. "
        "HOST: lists the runs on another host through ssh (HOST:DIR, ssh://[user@]host[:port]/dir).",
    )
    ls.add_argument(
        "where", nargs="?", help="HOST: or HOST:DIR for the runs on another host (over ssh)"
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


HEADER = ("RUN", "STATE", "STEP", "LOSS", "STEPS/S", "AGE", "SCRIPT")


@dataclass
class Listing:
    """The lines of ``optitui ls``: one row per run, notes under them."""

    rows: list[tuple[str, ...]]
    notes: list[str] = field(default_factory=list)
    older: int = 0  # runs not listed (without --all)


def row(paths: Any, now: float) -> tuple[tuple[str, ...], str | None]:
    """One run's line (RUN STATE STEP LOSS STEPS/S AGE SCRIPT), and its writer's host."""
    from optitui.store.reader import open_reader

    where = paths.elsewhere()
    if where is not None:  # its store is on the writer's disk: nothing to read from here
        return (paths.root.name, f"on {where.host}", "-", "-", "-", "-", ""), where.host
    try:
        with open_reader(paths.root) as r:
            st = r.status(now=now)
            loss = r.last_loss()
            meta = r.meta()
            script = Path(str(meta.get("script", "?"))).name
            host = meta.get("host")
            return (
                paths.root.name,
                st.state,
                f"{st.step:,}",
                "-" if loss is None else f"{loss:.4g}",
                _speed(st, meta),
                age(now - (st.last_record or st.heartbeat)),
                script,
            ), host if isinstance(host, str) else None
    except Exception as exc:  # one bad store costs one line
        return (paths.root.name, "unreadable", "-", "-", "-", "-", str(exc)[:40]), None


def listing(root: Path, show_all: bool, now: float, *, own_only: bool = False) -> Listing:
    """The runs under ``root``, newest first (``own_only``: this user's private runs only)."""
    from optitui.store.layout import find_runs

    runs = list(reversed(find_runs(root)))  # newest first
    notes: list[str] = []
    if own_only:
        from optitui.remote.owner import private_problem

        mine = [p for p in runs if private_problem(p) is None]
        if len(mine) < len(runs):
            notes.append(f"{len(runs) - len(mine)} runs not listed: not this user's own")
        runs = mine
    shown = runs if show_all else runs[:NEWEST]
    here = socket.gethostname()
    rows: list[tuple[str, ...]] = []
    foreign: dict[str, list[str]] = {}  # host -> runs read here, written there
    away: dict[str, list[str]] = {}  # host -> runs whose store is on that host's disk
    for paths in shown:
        line, host = row(paths, now)
        rows.append(line)
        if host is not None and host != here:
            (away if line[1] == f"on {host}" else foreign).setdefault(host, []).append(line[0])
    where = os.path.abspath(root)
    for host, names in away.items():
        notes.append(
            f"{_names(names)}: the job on {host} keeps the store on {host}'s own disk while "
            f"it runs (this directory is on a network filesystem, where SQLite cannot be "
            f"shared between hosts); `optitui ls {host}:{where}` or "
            f"`optitui attach {host}:{where}/RUN` read them there"
        )
    for host, names in foreign.items():
        notes.append(
            f"{_names(names)}: written on {host}, read here on {here}: liveness judged by "
            f"heartbeat only; `optitui attach {host}:RUN` reads them where they are written"
        )
    return Listing(rows, notes, len(runs) - len(shown))


def _names(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def render(found: Listing) -> list[str]:
    """The table, aligned, then the notes."""
    table = [HEADER, *found.rows]
    widths = [max(len(r[i]) if i < len(r) else 0 for r in table) for i in range(len(HEADER))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)).rstrip() for line in table
    ]
    if found.older:
        lines.append(f"… and {found.older} older; `optitui ls --all` lists every run")
    return lines + [f"note: {n}" for n in found.notes]


def main(args: argparse.Namespace) -> int:
    root = args.root
    if args.where is not None:
        from optitui.remote.target import TargetError, parse

        try:
            target = parse(args.where)
        except TargetError as exc:
            err(str(exc))
            return 2
        if target is not None:
            return _remote(target, args.all)
        root = Path(args.where)
    found = listing(root, args.all, time.time())
    if not found.rows and not found.older:
        print(f"no runs under {root}/")
        return 0
    print("\n".join(render(found)))
    return 0


def _remote(target: Any, show_all: bool) -> int:
    """The same table, made on the far side by ``optitui serve-stdio`` over ssh."""
    from optitui.remote.client import RemoteError, list_runs

    try:
        got = list_runs(target, show_all)
    except RemoteError as exc:
        err(f"{target.label}: {exc}")
        return 2
    rows = [tuple(str(c) for c in r) for r in got["rows"] if isinstance(r, list)]
    older = int(got["older"]) if isinstance(got.get("older"), int) else 0
    notes = [str(n) for n in got.get("notes", []) if isinstance(n, str)]
    if not rows and not older:
        print(f"no runs under {target.host}:{got.get('root')}/")
        print("\n".join(f"note: {n}" for n in notes))
    else:
        print("\n".join(render(Listing(rows, notes, older))))
    return 0
