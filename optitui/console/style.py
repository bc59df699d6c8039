"""Colour for plain-text output, only on a terminal and never under ``NO_COLOR``;
and the one-line form of a job's event, shared by the headless log and ``status``."""

from __future__ import annotations

import os
import time
from typing import TextIO

from optitui.store.reader import EventRow

#: SGR codes by what is shown
CODES = {
    "dim": "2",
    "bold": "1",
    "command": "36",
    "lr-find": "35",
    "checkpoint": "34",
    "warning": "33",
    "error": "1;31",
    "running": "1;32",
    "paused": "1;33",
    "lr-find-state": "1;35",
    "race": "1;35",
    "finished": "1;34",
    "stopped": "1;34",
    "failed": "1;31",
    "crashed": "1;31",
}


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, unless ``NO_COLOR`` is set (no-color.org) or TERM=dumb."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError, OSError):  # a closed or unusual stream
        return False
    return tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


class Style:
    """Wraps text in an SGR colour when enabled; returns it unchanged otherwise."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, what: str) -> str:
        code = CODES.get(what)
        if not self.color or code is None or not text:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"


def stamp(t: float) -> str:
    """Local wall time, as it prefixes every line of the headless log."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def event_line(e: EventRow, style: Style) -> str:
    """``2026-12-01 12:03:04 checkpoint step 1,300  saved ckpt-... (periodic)``"""
    message = e.message.splitlines()[0] if e.message else ""
    return (
        f"{style(stamp(e.time), 'dim')} {style(f'{e.kind:<10}', e.kind)} "
        f"step {e.step:,}  {style(message, 'error') if e.kind == 'error' else message}"
    )
