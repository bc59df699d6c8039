"""``optitui attach``: the dashboard on a run that is already going (or done)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from optitui.cli.common import err, has_terminal


def add_parser(sub: Any) -> None:
    att = sub.add_parser(
        "attach",
        help="open the dashboard on a run (default: the newest running one under --root)",
        description="Shows the run's whole history, then live updates; q detaches or stops. "
        "Several dashboards may attach to one run.",
    )
    att.add_argument("run", nargs="?", help="run directory (or its name under --root)")
    att.add_argument("--root", type=Path, default=Path("runs"), help="where runs are (./runs)")
    att.add_argument(
        "--no-bell",
        action="store_true",
        help="no terminal bell when the run pauses itself, fails or ends",
    )


def main(args: argparse.Namespace) -> int:
    if not has_terminal():  # the dashboard would draw escape codes and wait for keys
        run = args.run or "RUN"
        err(
            "no terminal: the dashboard needs one; run `optitui attach "
            f"{run}` in a terminal (ssh -t HOST ...), or `optitui status {run}` for a summary"
        )
        return 2
    from optitui.store.client import resolve_run
    from optitui.store.layout import latest_running_run
    from optitui.store.reader import open_reader

    try:
        if args.run is not None:
            paths = resolve_run(args.run, args.root)
        else:
            found = latest_running_run(args.root)
            if found is None:
                err(f"no running job under {args.root}/; give a RUN_DIR (see `optitui ls`)")
                return 2
            paths = found
        with open_reader(paths.root) as reader:
            problem = reader.schema_problem()
    except FileNotFoundError as exc:
        err(str(exc))
        return 2
    if problem:
        err(problem)
        return 2
    from optitui.tui.feed import StoreFeed

    feed = StoreFeed(paths.root)
    feed.prefetch()  # a long history is read while Textual loads
    from optitui.tui.app import build_app
    from optitui.tui.settings import ViewerSettings

    app = build_app(paths.root, feed=feed, settings=ViewerSettings(bell=not args.no_bell))
    app.run()
    return app.return_code or 0
