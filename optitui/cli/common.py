"""What every verb of the command line shares: argument types and one-line errors."""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optitui.store.reader import RunUnreadable

if TYPE_CHECKING:
    from optitui.store.reader import RunReader

__all__ = ["STORE_ERRORS", "RunUnreadable", "err", "one_line", "open_run"]


def err(msg: str) -> None:
    """One line on stderr, prefixed with the program's name."""
    print(f"optitui: {msg}", file=sys.stderr)


def _whole_at_least(text: str, low: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"expected a number >= {low}, got {v}")
    return v


def positive_int(text: str) -> int:
    return _whole_at_least(text, 1)


def count_int(text: str) -> int:
    """A whole number >= 0 (0 turns something off)."""
    return _whole_at_least(text, 0)


def seconds(text: str) -> float:
    """A duration in seconds: a finite number >= 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text}")
    return v


def has_terminal() -> bool:
    """Whether stdin, stdout and stderr are all terminals: the dashboard draws on one
    (escape codes) and waits for keys from one."""
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        try:
            if stream is None or not stream.isatty():
                return False
        except (AttributeError, ValueError, OSError):  # closed or replaced streams
            return False
    return True


def whole_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def age(seconds: float) -> str:
    """A duration as a short age: 45s, 12m, 5h, 3d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


#: what reading a damaged, foreign or vanishing run store can raise
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError, ValueError)


def written_by(meta: dict[str, Any]) -> str:
    """Which optitui wrote a run, as far as its store says."""
    version = meta.get("optitui_version")
    return f"optitui {version}" if isinstance(version, str) else "an optitui that did not say"


def open_run(name: str, root: Path, verb: str) -> RunReader:
    """A reader on the run ``name`` (a run directory, or its name under ``root``), checked
    to exist, to be readable by this user, to open, and to be in the store schema this
    optitui reads. ``verb`` names the command in the hint for a run on another host.
    Raises RunUnreadable, whose message is the one line to show. Every verb that reads
    a run opens it here."""
    from optitui.remote.target import TargetError, parse
    from optitui.store.client import resolve_run
    from optitui.store.reader import open_reader

    try:
        target = parse(name)
    except TargetError as exc:
        raise RunUnreadable(str(exc)) from None
    if target is not None:
        raise RunUnreadable(
            f"{name}: `optitui {verb}` reads runs on this host; run it on {target.host} "
            f"(ssh {target.host} optitui {verb} ...)"
        )
    try:
        reader = open_reader(resolve_run(Path(name).expanduser(), root).root)
    except FileNotFoundError as exc:
        raise RunUnreadable(str(exc)) from None
    except STORE_ERRORS as exc:
        raise RunUnreadable(f"{name}: the run store cannot be read: {exc}") from None
    try:
        problem = reader.schema_problem()
        if problem is not None:
            raise RunUnreadable(f"{name}: written by {written_by(reader.meta())}: {problem}")
    except RunUnreadable:  # an OSError too: caught first, or the line names the run twice
        reader.close()
        raise
    except STORE_ERRORS as exc:
        reader.close()
        raise RunUnreadable(f"{name}: the run store cannot be read: {exc}") from None
    return reader


def one_line(exc: BaseException) -> str:
    """An error from the environment (a file, a folder, a store) as one line for a person:
    what, where, why; never a traceback."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        return f"{where}: {exc.strerror}" if where else exc.strerror
    if isinstance(exc, sqlite3.Error):
        return f"the run store cannot be read: {exc}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
