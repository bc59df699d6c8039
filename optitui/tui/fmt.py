"""Short human formats for the status bar and the group table."""

from __future__ import annotations

from typing import Any

from optitui.console.fmt import count, duration, rate, value

__all__ = ["count", "duration", "editable_text", "nbytes", "rate", "value"]


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
        return repr(v)
    if isinstance(v, list | tuple):
        return ", ".join(editable_text(x) for x in v)
    return "" if v is None else str(v)
