"""Short human formats shared by the dashboard, the headless log and ``optitui status``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

SPARKS = "▁▂▃▄▅▆▇█"


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


def loss(x: float | None) -> str:
    """A loss with four significant digits; "-" when there is none, nan/inf as such."""
    if x is None:
        return "-"
    return f"{x:.4g}"


def sparkline(values: Sequence[float]) -> str:
    """One block character per value, lowest to highest; a gap for a non-finite value."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(" ")
        elif span <= 0:
            out.append(SPARKS[len(SPARKS) // 2])
        else:
            out.append(SPARKS[min(len(SPARKS) - 1, int((v - lo) / span * len(SPARKS)))])
    return "".join(out)
