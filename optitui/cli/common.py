"""What every verb of the command line shares: argument types and one-line errors."""

from __future__ import annotations

import argparse
import math
import sys


def err(msg: str) -> None:
    """One line on stderr, prefixed with the program's name."""
    print(f"optitui: {msg}", file=sys.stderr)


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {v}")
    return v


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
