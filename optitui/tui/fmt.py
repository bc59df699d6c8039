"""Short human formats for the status bar and the group table."""

from __future__ import annotations

import math
import re
from typing import Any

from optitui.console.fmt import count, duration, rate, value

__all__ = [
    "count",
    "duration",
    "editable_text",
    "group_name",
    "group_words",
    "nbytes",
    "rate",
    "short_float",
    "short_id",
    "shorten_ids",
    "value",
]

#: a command (and range test) id: 20-digit nanosecond time, pid, 6 random hex digits
LONG_ID = re.compile(r"\b\d{20}-\d+-([0-9a-f]{6})\b")


def nbytes(n: int | None) -> str:
    if n is None:
        return "-"
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if x < 1024:
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} TiB"


def editable_text(v: Any) -> str:
    """A value as the editor pre-fills it: parseable back by ``fields.parse_text``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return short_float(v)
    if isinstance(v, list | tuple):
        return ", ".join(editable_text(x) for x in v)
    return "" if v is None else str(v)


def short_float(v: float) -> str:
    """The shortest text for ``v``: exact when 15 significant digits can say it, else
    the 15-digit form, which drops float noise (0.02 * 1.1 is 0.022, not
    0.022000000000000002; they differ in the last bit)."""
    if not math.isfinite(v):
        return repr(v)
    for digits in range(1, 16):
        text = f"{v:.{digits}g}"
        if float(text) == v:
            return text
    return f"{v:.15g}"


def short_id(cid: str) -> str:
    """A command or range test id as shown: its random part (``fd0d9d``), which is
    unique among a run's commands; other ids are shown whole."""
    m = LONG_ID.fullmatch(cid)
    return m.group(1) if m else cid


def shorten_ids(text: str) -> str:
    """``text`` with every long command id in its short form."""
    return LONG_ID.sub(lambda m: m.group(1), text)


def group_name(group: dict[str, Any], index: int) -> str:
    """The name a group is shown by: its own, or ``group N`` for one without (the job
    reports those by their index)."""
    name = group.get("name")
    if name in (None, "") or str(name) == str(index):
        return f"group {index}"
    return str(name)


def group_words(label: str) -> str:
    """A group as a sentence names it: ``group body``, and ``group 0`` as it is."""
    return label if label.startswith("group ") else f"group {label}"
