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
        help="seconds to wait for the answer (10), and in all for lr-find's report (no limit)",
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
        if kind == "lr-find":
            return _follow_range_test(paths, sent.id, deadline, args.timeout)
        return 0
    print(f"rejected at step {out.step}: {out.reason}", file=sys.stderr)
    return 1


def _follow_range_test(paths: Any, test_id: str, deadline: float, timeout: float) -> int:
    """Wait for a range test sent to a live job (until ``deadline``), then print its curve
    and suggestions."""
    from optitui.lrfind_report import as_dict, report
    from optitui.store.reader import open_reader

    with open_reader(paths.root) as reader:
        while True:
            tests = reader.range_tests(test_id)
            if tests and tests[0].status != "running":
                print(report(as_dict(tests[0])))
                return 0 if tests[0].status == "done" else 1
            if not reader.status().alive:
                err("the run ended before the range test finished")
                return 3
            if time.monotonic() > deadline:
                err(_still_running(test_id, timeout))
                return 3
            time.sleep(0.2)


def _still_running(test_id: str, timeout: float) -> str:
    return (
        f"no report within --timeout {timeout:g} s: range test {test_id} goes on in the job "
        "(see it with optitui attach; stop it with lr-find-cancel)"
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
        if kind == "lr-find":
            return _follow_remote_test(run, cid, deadline, args.timeout)
        return 0
    except RemoteError as exc:
        err(str(exc))
        return 3
    finally:
        run.close()


def _follow_remote_test(run: Any, test_id: str, deadline: float, timeout: float) -> int:
    from optitui.lrfind_report import as_dict, report

    while True:
        if time.monotonic() > deadline:
            err(_still_running(test_id, timeout))
            return 3
        test = run.range_test(test_id)
        if test is not None and test.status != "running":
            print(report(as_dict(test)))
            return 0 if test.status == "done" else 1
        if not run.status().alive or run.fatal is not None:
            err("the run ended before the range test finished")
            return 3
        run.mirror.changed.wait(0.5)
        run.mirror.changed.clear()
