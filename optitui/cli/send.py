"""``optitui send``: one command to a running job, and its answer."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from optitui.cli.common import err, open_run, positive_int
from optitui.store.words import USAGE


def add_parser(sub: Any) -> None:
    send = sub.add_parser(
        "send",
        help="send a command to a running job and wait for its answer",
        description="Commands:\n  "
        + "\n  ".join(USAGE.values())
        + "\n\nExit status: 0 applied, 1 rejected, 2 bad command, 3 no answer.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.add_argument("run", help="run directory (or its name under --root), or HOST:RUN")
    send.add_argument("command", help="set, scale-lr, pause, resume, step, stop, ... (below)")
    send.add_argument("args", nargs="*", help="FIELD=VALUE pairs for set; FACTOR; N")
    send.add_argument("--ramp", type=positive_int, help="spread set/scale-lr over N steps")
    send.add_argument("--group", help="param group index or name (default: all groups)")
    send.add_argument(
        "--timeout",
        type=float,
        help="seconds to wait for the answer (10), and in all for lr-find's or race's "
        "report (no limit)",
    )
    send.add_argument("--root", type=Path, default=Path("runs"))


ANSWER_TIMEOUT_S = 10.0


def main(args: argparse.Namespace) -> int:
    from optitui.remote.target import parse
    from optitui.store.client import NoAnswer, send
    from optitui.store.words import parse_send

    # a given --timeout bounds everything, a range test's report included
    deadline = math.inf if args.timeout is None else time.monotonic() + args.timeout
    if args.timeout is None:
        args.timeout = ANSWER_TIMEOUT_S
    try:
        kind, cargs = parse_send(args.command, args.args, args.group, args.ramp)
        target = parse(args.run)
        if target is not None:
            return _send_remote(target, kind, cargs, args, deadline)
        with open_run(args.run, args.root, "send") as reader:  # there, readable, our schema
            paths = reader.paths
        sent = send(paths, kind, cargs, timeout=args.timeout)
    except (ValueError, FileNotFoundError) as exc:  # CommandError is a ValueError
        err(str(exc))
        return 2 if not isinstance(exc, FileNotFoundError) else 3
    except NoAnswer as exc:
        err(str(exc))
        return 3
    out = sent.outcome
    if out is None:
        print(f"sent {sent.id}")
        return 0
    if out.applied:
        note = f"; {out.reason}" if out.reason else ""  # what it made, how it applied
        print(f"applied after step {out.step}: {kind} ({sent.id}){note}")
        if kind in FOLLOWED:
            return _follow(paths, kind, sent.id, deadline, args.timeout, args.run)
        return 0
    print(f"rejected at step {out.step}: {out.reason}", file=sys.stderr)
    return 1


#: commands that start something long: ``send`` waits for it and prints its answer
FOLLOWED = {"lr-find": "range test", "race": "race"}


def _ended(kind: str, found: Any, run: str) -> tuple[str, int] | None:
    """What to print, and the exit status, once a range test or race has ended."""
    if found is None or found.status == "running":
        return None
    if kind == "race":
        from optitui.console.race_table import table

        return table(found, run), 0 if found.status in ("done", "cancelled") else 1
    from optitui.lrfind_report import as_dict, report

    return report(as_dict(found)), 0 if found.status == "done" else 1


def _follow(paths: Any, kind: str, cid: str, deadline: float, timeout: float, run: str) -> int:
    """Wait for a range test or race sent to a live job (until ``deadline``), then print
    its answer: the curve and suggestions, or the race's table."""
    from optitui.store.reader import open_reader

    with open_reader(paths.root) as reader:
        while True:
            found = reader.range_tests(cid) if kind == "lr-find" else reader.races(cid)
            end = _ended(kind, found[0] if found else None, run)
            if end is not None:
                print(end[0])
                return end[1]
            if not reader.status().alive:
                err(f"the run ended before the {FOLLOWED[kind]} finished")
                return 3
            if time.monotonic() > deadline:
                err(_still_running(kind, cid, timeout))
                return 3
            time.sleep(0.2)


def _still_running(kind: str, cid: str, timeout: float) -> str:
    cancel = "lr-find-cancel" if kind == "lr-find" else "race-cancel"
    return (
        f"no report within --timeout {timeout:g} s: {FOLLOWED[kind]} {cid} goes on in the "
        f"job (see it with optitui attach; stop it with {cancel})"
    )


def _send_remote(
    target: Any, kind: str, cargs: dict[str, Any], args: argparse.Namespace, deadline: float
) -> int:
    """The same command to a run on another host, through ssh; the same answers."""
    from optitui.remote.client import RemoteError, RemoteRun

    root = str(args.root) if args.root != Path("runs") else None
    run = RemoteRun(target, root=root, history=False)
    run.start()
    try:
        run.wait_ready(120.0)
        run.mirror.synced.wait(args.timeout)  # the run's present state has arrived
        status = run.status()
        if not status.alive:
            err(f"the run is {status.state}; no job is there to answer")
            return 3
        cid = run.send(kind, cargs)
        if args.timeout <= 0:
            print(f"sent {cid}")
            return 0
        answer_by = min(deadline, time.monotonic() + args.timeout)
        while (out := run.outcome(cid)) is None:
            lost = run.undelivered(cid)
            if lost is not None:
                err(lost)
                return 3
            if time.monotonic() > answer_by or not run.status().alive:
                state = run.status().state
                err(f"no answer within {args.timeout:g} s (run is {state}); command {cid}")
                return 3
            run.mirror.changed.wait(0.2)
            run.mirror.changed.clear()
        if not out.applied:
            print(f"rejected at step {out.step}: {out.reason}", file=sys.stderr)
            return 1
        print(f"applied after step {out.step}: {kind} ({cid})")
        if kind in FOLLOWED:
            return _follow_remote(run, kind, cid, deadline, args.timeout, args.run)
        return 0
    except RemoteError as exc:
        err(str(exc))
        return 3
    finally:
        run.close()


def _follow_remote(
    run: Any, kind: str, cid: str, deadline: float, timeout: float, name: str
) -> int:
    while True:
        if time.monotonic() > deadline:
            err(_still_running(kind, cid, timeout))
            return 3
        found = run.range_test(cid) if kind == "lr-find" else run.race(cid)
        end = _ended(kind, found, name)
        if end is not None:
            print(end[0])
            return end[1]
        if not run.status().alive or run.fatal is not None:
            err(f"the run ended before the {FOLLOWED[kind]} finished")
            return 3
        run.mirror.changed.wait(0.5)
        run.mirror.changed.clear()
