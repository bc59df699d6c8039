"""Short human formats for the status bar and the group table."""

from __future__ import annotations

import math
from typing import Any


def count(n: float) -> str:
    """12, 1.2k, 3.4M."""
    a = abs(n)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if a >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.3g}"


def rate(x: float | None) -> str:
    """A speed; "–" when unknown, or 0 (a probe that does not know its batch size)."""
    if x is None or not math.isfinite(x) or x <= 0:
        return "–"
    return count(x) if x >= 100 else f"{x:.3g}"


def duration(seconds: float) -> str:
    """0s, 59s, 4m12s, 3h05m, 2d04h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def nbytes(n: int | None) -> str:
    if n is None:
        return "-"
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if x < 1024:
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} TiB"


def value(v: Any) -> str:
    """A hyperparameter value: 0.05, 3e-04, on/off, (0.9, 0.999)."""
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return "(" + ", ".join(value(x) for x in v) + ")"
    return "-" if v is None else str(v)


def editable_text(v: Any) -> str:
    """A value as the editor pre-fills it: parseable back by ``fields.parse_text``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list | tuple):
        return ", ".join(editable_text(x) for x in v)
    return "" if v is None else str(v)
