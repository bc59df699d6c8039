"""``optitui attach``: the dashboard on a run that is already going (or done), here or
on another host through ssh (``HOST:RUN``)."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any

from optitui.cli.common import RunUnreadable, err, has_terminal, open_run

#: how long the first connection to another host may take (a passphrase typed included)
CONNECT_S = 120.0
#: runs drawn over the steered one at most (as optitui.tui.overlay.MAX_OVERLAYS)
MAX_OVERLAYS = 8


def add_parser(sub: Any) -> None:
    att = sub.add_parser(
        "attach",
        help="open the dashboard on a run (default: the newest running one under --root)",
        description="Shows the run's whole history, then live updates; q detaches or stops. "
        "Several dashboards may attach to one run. A run on another host is named HOST:RUN "
        "(or ssh://[user@]host[:port]/path): the dashboard runs here and reads the run there "
        "through your ssh, which runs `optitui serve-stdio` on that host ($OPTITUI_REMOTE, "
        "default `optitui`, is the command there; $OPTITUI_SSH, default `ssh`, the one here). "
        "With several runs, the keys steer the first and the others are drawn over its plots "
        f"(at most {MAX_OVERLAYS}), each in its own colour; b in the dashboard browses the runs "
        "under --root to overlay or steer.",
    )
    att.add_argument(
        "run",
        nargs="*",
        help="run directory (or its name under --root), or HOST:RUN; more runs are overlaid",
    )
    att.add_argument("--root", type=Path, default=Path("runs"), help="where runs are (./runs)")
    att.add_argument(
        "--no-bell",
        action="store_true",
        help="no terminal bell when the run pauses itself, fails or ends",
    )
    att.add_argument(
        "--pin",
        metavar="METRIC",
        help="draw this metric (acc, val_acc, ...) under the loss plot",
    )


def main(args: argparse.Namespace) -> int:
    names: list[str] = list(args.run or [])
    args.run = names[0] if names else None  # the run the keys steer; the others overlaid
    if not has_terminal():  # the dashboard would draw escape codes and wait for keys
        run = args.run or "RUN"
        err(
            "no terminal: the dashboard needs one; run `optitui attach "
            f"{run}` in a terminal (ssh -t HOST ...), or `optitui status {run}` for a summary"
        )
        return 2
    from optitui.remote.target import TargetError, parse
    from optitui.store import leftovers
    from optitui.store.reader import latest_running_run

    problem = _overlay_problem(names)
    if problem is not None:
        err(problem)
        return 2
    try:
        target = parse(args.run) if args.run is not None else None
    except TargetError as exc:
        err(str(exc))
        return 2
    if target is not None:
        return _attach_remote(target, args)
    if args.run is not None:
        name = args.run
    else:
        found = latest_running_run(args.root)
        if found is None:
            err(f"no running job under {args.root}/; give a RUN_DIR (see `optitui ls`)")
            return 2
        name = str(found.root)
    try:
        with open_run(name, args.root, "attach") as reader:
            paths = reader.paths
            writer = reader.meta().get("host")
            alive = reader.status().alive
    except RunUnreadable as exc:
        err(str(exc))
        return 2
    overlays = _overlays(names[1:], args.root, paths.root)
    if isinstance(overlays, str):  # refused before anything is cleaned or opened
        err(overlays)
        return 2
    if not alive:  # a job that died: what it left half-written goes, ours only
        gone = leftovers.clean(paths)
        if gone:
            print(f"optitui: removed what the job left when it ended: {', '.join(gone)}")
    from optitui.tui.feed import StoreFeed

    feed = StoreFeed(paths.root)
    feed.prefetch()  # a long history is read while Textual loads
    from optitui.tui.overlay_feed import overlay_run

    followed = [overlay_run(p, prefetch=True) for p in overlays]
    from optitui.tui.app import build_app
    from optitui.tui.settings import ViewerSettings

    app = build_app(
        paths.root,
        feed=feed,
        settings=ViewerSettings(bell=not args.no_bell, runs_root=args.root, pinned=args.pin),
        note=writer_note(writer, socket.gethostname()),
        overlays=followed,
    )
    app.run()
    return app.return_code or 0


def _overlay_problem(names: list[str]) -> str | None:
    """Why these runs cannot be opened together, before anything is read."""
    if len(names) > 1 + MAX_OVERLAYS:
        return (
            f"{len(names) - 1} runs to overlay: at most {MAX_OVERLAYS} can be drawn over the "
            "steered run"
        )
    if len(names) < 2:
        return None
    from optitui.remote.target import TargetError, parse

    for name in names:
        try:
            remote = parse(name) is not None
        except TargetError as exc:
            return str(exc)
        if remote:
            return (
                f"{name}: runs on another host cannot be overlaid (nor overlay runs here); "
                "attach to it alone, or copy its run directory here"
            )
    return None


def _overlays(names: list[str], root: Path, steered: Path) -> list[Path] | str:
    """The run directories to overlay, each checked to be a run this optitui reads (one
    of another optitui version with the same store schema is shown read-only); or why not."""
    from optitui.tui.overlay_feed import run_key

    seen = {run_key(steered): "the run the keys steer"}
    out: list[Path] = []
    for name in names:
        try:
            with open_run(name, root, "attach") as reader:
                found = reader.paths.root
        except RunUnreadable as exc:
            return str(exc)
        key = run_key(found)
        if key in seen:
            return f"{name}: named twice (already {seen[key]})"
        seen[key] = f"given as {name}"
        out.append(found)
    return out


def writer_note(writer: Any, here: str) -> str:
    """What the status bar says when the job writes its store on another host than this."""
    if not isinstance(writer, str) or writer == here:
        return ""
    return f"job on {writer}, viewer on {here}: liveness by heartbeat only"


def _attach_remote(target: Any, args: argparse.Namespace) -> int:
    from optitui.remote.client import RemoteError, RemoteRun

    root = str(args.root) if args.root != Path("runs") else None
    run = RemoteRun(target, root=root)
    run.start()  # ssh connects, the server starts streaming while Textual loads
    from optitui.tui.app import build_app
    from optitui.tui.remote_feed import RemoteFeed
    from optitui.tui.settings import ViewerSettings

    try:
        info = run.wait_ready(CONNECT_S)
    except RemoteError as exc:
        run.close()
        err(str(exc))
        return 2
    feed = RemoteFeed(run)
    feed.prefetch()

    note = f"over ssh from {info.host}"
    if info.writer_host and info.writer_host != info.host:
        note += f"; {writer_note(info.writer_host, info.host)}"
    settings = ViewerSettings(bell=not args.no_bell, pinned=args.pin)
    app = build_app(None, run=run, feed=feed, settings=settings, note=note)
    app.run()
    return app.return_code or 0
