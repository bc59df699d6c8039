"""``optitui ls``: the runs under a root, newest first, one line each."""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optitui.cli.common import age, err, written_by

#: runs listed without --all
NEWEST = 20


def add_parser(sub: Any) -> None:
    ls = sub.add_parser(
        "ls",
        help="list runs, newest first, with state, step, last loss, steps/s and age",
        description="Runs under --root, newest first. steps/s is the current speed of a "
        "running job and the run's average for one that is over; AGE is the time since "
        f"its last record; TREND a sparkline of the loss over the whole run (log scale when "
        f"it falls over decades). Only the {NEWEST} newest are listed unless --all. "
        "HOST: lists the runs on another host through ssh (HOST:DIR, ssh://[user@]host[:port]/dir).",
    )
    ls.add_argument(
        "where", nargs="?", help="HOST: or HOST:DIR for the runs on another host (over ssh)"
    )
    ls.add_argument("--root", type=Path, help="where runs are (./runs)")
    ls.add_argument(
        "--all", action="store_true", help=f"list every run, not only the {NEWEST} newest"
    )
    ls.add_argument(
        "--json", action="store_true", help="print the list as one JSON object (runs, notes)"
    )


HEADER = ("RUN", "STATE", "STEP", "LOSS", "STEPS/S", "AGE", "SCRIPT", "TREND")
#: points in the TREND column: each the mean loss of a stretch of the run
TREND_POINTS = 16


@dataclass
class Listing:
    """The lines of ``optitui ls``: one row per run, notes under them."""

    rows: list[tuple[str, ...]]
    notes: list[str] = field(default_factory=list)
    older: int = 0  # runs not listed (without --all)
    #: the same runs as plain data (``--json``), in the same order
    runs: list[dict[str, Any]] = field(default_factory=list)


def record(paths: Any, now: float) -> dict[str, Any]:
    """One run as plain data: what its line shows, unformatted. Only ``run``, ``path``,
    ``state`` and what explains it for a store that cannot be read here: ``problem`` (why),
    or ``host`` for state ``elsewhere`` (the store is on that host's disk while it runs)."""
    from optitui.console.summary import loss_spark, trend
    from optitui.store.reader import open_reader, why_unreadable

    out: dict[str, Any] = {"run": paths.root.name, "path": str(paths.root)}
    try:
        closed = why_unreadable(paths.root)  # whose it is, before a look inside fails
        if closed is not None:
            return out | {"state": "unreadable", "problem": closed}
        where = paths.elsewhere()
        if where is not None:  # its store is on the writer's disk: nothing to read from here
            return out | {"state": "elsewhere", "host": where.host}
        with open_reader(paths.root) as r:
            meta = r.meta()
            problem = r.schema_problem()
            if problem is not None:  # another optitui's store: named, not read further
                by, version = written_by(meta), meta.get("optitui_version")
                return out | {
                    "state": "unreadable",
                    "problem": f"{problem}; written by {by}",
                    "optitui_version": version if isinstance(version, str) else None,
                }
            st = r.status(now=now)
            # the trend reads an even sample of at most 4 x TREND_POINTS metric rows
            values, first, last = trend(r, TREND_POINTS)
            host, script = meta.get("host"), meta.get("script")
            version = meta.get("optitui_version")
            return out | {
                "state": st.state,
                "step": st.step,
                "loss": r.last_loss(),
                "best_val": r.best_val(),
                **_speed(st, meta),
                "last_record": st.last_record or st.heartbeat or None,
                "age_s": max(0.0, now - (st.last_record or st.heartbeat)),
                "script": script if isinstance(script, str) else None,
                "host": host if isinstance(host, str) else None,
                "optitui_version": version if isinstance(version, str) else None,
                "trend": {
                    "values": values,
                    "first_step": first,
                    "last_step": last,
                    "log_scale": loss_spark(values)[1],
                },
            }
    except Exception as exc:  # one bad store costs one line (the line names the run)
        why = str(exc).removeprefix(f"{paths.root}: ")
        return out | {"state": "unreadable", "problem": why}


def _speed(status: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """The job's own speed while it runs; the run's average once it is over."""
    if status.state == "running":
        return {"steps_per_s": status.steps_per_s, "speed": "now"}
    if status.state in ("paused", "starting", "lr-find", "race"):
        return {"steps_per_s": None, "speed": None}
    start, end = meta.get("start"), status.last_record
    if isinstance(start, int | float) and end is not None and end > start and status.step > 0:
        return {"steps_per_s": status.step / (end - start), "speed": "average"}
    return {"steps_per_s": None, "speed": None}


def cells(run: dict[str, Any]) -> tuple[str, ...]:
    """A run's line: RUN STATE STEP LOSS STEPS/S AGE SCRIPT TREND."""
    from optitui.console import fmt
    from optitui.console.summary import loss_spark

    if run["state"] == "elsewhere":
        return (run["run"], f"on {run['host']}", "-", "-", "-", "-", "", "")
    if run.get("problem") is not None:
        return (run["run"], run["state"], "-", "-", "-", "-", str(run["problem"])[:60], "")
    rate = fmt.rate(run["steps_per_s"])
    loss = run["loss"]
    return (
        run["run"],
        run["state"],
        f"{run['step']:,}",
        "-" if loss is None else f"{loss:.4g}",
        "avg " + rate if run["speed"] == "average" and rate != "–" else rate,
        age(run["age_s"]),
        Path(run["script"] or "?").name,
        loss_spark(run["trend"]["values"])[0],
    )


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
    runs_out: list[dict[str, Any]] = []
    for paths in shown:
        run = record(paths, now)
        runs_out.append(run)
        line, host = cells(run), run.get("host")
        rows.append(line)
        if host is not None and host != here:
            (away if run["state"] == "elsewhere" else foreign).setdefault(host, []).append(line[0])
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
    return Listing(rows, notes, len(runs) - len(shown), runs_out)


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
    """Exit 0, or 1 when a run is listed that cannot be read (its line says why), or 2
    when the root itself cannot be."""
    root = args.root if args.root is not None else Path("runs")
    if args.where is not None:
        from optitui.remote.target import TargetError, parse

        try:
            target = parse(args.where)
        except TargetError as exc:
            err(str(exc))
            return 2
        if target is not None:
            return _remote(target, args.all, args.json)
        root = Path(args.where)
    named = args.root is not None or args.where is not None
    problem = _root_problem(root, named)
    if problem is not None:
        err(problem)
        return 2
    found = listing(root, args.all, time.time())
    code = 1 if any(r.get("problem") is not None for r in found.runs) else 0
    if args.json:
        print(as_json(str(root), found))
        return code
    if not found.rows and not found.older:
        print(f"no runs under {root}/")
        return 0
    print("\n".join(render(found)))
    return code


def _root_problem(root: Path, named: bool) -> str | None:
    """Why the runs under ``root`` cannot be listed (a missing ./runs is just empty)."""
    from optitui.store.reader import why_unreadable

    why = why_unreadable(root)
    if why is not None:
        return f"{root}: {why}"
    if not root.exists():
        return f"{root}: no such directory" if named else None
    if not root.is_dir():
        return f"{root}: not a folder"
    return None


def as_json(root: str, found: Listing) -> str:
    """``ls --json``: the runs (newest first), how many older ones were left out, the notes."""
    from optitui.console.summary import json_ready

    body = {"root": root, "runs": found.runs, "older": found.older, "notes": found.notes}
    return json.dumps(json_ready(body), indent=2)


def _remote(target: Any, show_all: bool, as_data: bool = False) -> int:
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
    if as_data:
        runs = got.get("runs")
        if not isinstance(runs, list):
            err(f"{target.label}: the optitui there lists no runs as data; update it there")
            return 2
        found = Listing(rows, notes, older, [r for r in runs if isinstance(r, dict)])
        print(as_json(f"{target.host}:{got.get('root')}", found))
        return 0
    if not rows and not older:
        print(f"no runs under {target.host}:{got.get('root')}/")
        print("\n".join(f"note: {n}" for n in notes))
    else:
        print("\n".join(render(Listing(rows, notes, older))))
    return 0
