"""``optitui status``: one run summed up, as text or JSON, without the dashboard."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from optitui.cli.common import RunUnreadable, err, open_run, positive_int


def add_parser(sub: Any) -> None:
    st = sub.add_parser(
        "status",
        help="print one run's state, step, ETA, loss and trend, groups, commands, checkpoints",
        description="A one-shot summary for scripts and for terminals without the dashboard: "
        "state, step and ETA, the loss now and its trend, each param group's "
        "hyperparameters, the last commands and warnings, the newest checkpoints.",
    )
    st.add_argument(
        "run", help="run directory (or its name under --root), or HOST:RUN (read there over ssh)"
    )
    st.add_argument("--root", type=Path, default=Path("runs"), help="where runs are (./runs)")
    st.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    st.add_argument(
        "--last", type=positive_int, default=5, metavar="N", help="commands and warnings shown (5)"
    )


def main(args: argparse.Namespace) -> int:
    from optitui.console.style import Style, use_color
    from optitui.console.summary import json_ready, render, summarize
    from optitui.remote.target import TargetError, parse

    try:
        target = parse(args.run)
    except TargetError as exc:
        err(str(exc))
        return 2
    if target is not None:
        return _remote(target, args)
    try:
        with open_run(args.run, args.root, "status") as reader:
            summary = summarize(reader, last=args.last)
    except RunUnreadable as exc:
        err(str(exc))
        return 2
    except (sqlite3.Error, OSError, ValueError) as exc:  # a damaged or foreign store
        err(f"{args.run}: the run store cannot be read: {exc}")
        return 2
    if args.json:
        print(json.dumps(json_ready(summary), indent=2))
    else:
        print(render(summary, Style(use_color(sys.stdout))))
    return 0


def _remote(target: Any, args: argparse.Namespace) -> int:
    """``optitui status`` run on the run's own host (where its store is local), over ssh."""
    import subprocess

    if not target.path:
        err(f"{target.label}: name the run, e.g. {target.host}:runs/NAME")
        return 2
    words = ["status", target.path, "--root", str(args.root), "--last", str(args.last)]
    argv = target.ssh_argv([*words, *(["--json"] if args.json else [])], batch=False)
    try:
        code = subprocess.call(argv, stdin=subprocess.DEVNULL)
    except OSError as exc:
        err(f"{target.label}: cannot run ssh: {exc}")
        return 2
    if code not in (0, 2):  # 255: ssh itself failed, and said why
        err(f"{target.label}: no answer over ssh (exit status {code})")
        return 2
    return code
