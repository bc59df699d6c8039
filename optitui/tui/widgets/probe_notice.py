"""For runs driven by ``optitui.watch``, zero-code mode or a framework callback: one line
saying what needs the probe (the help screen lists it in full)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


def probe(meta: dict[str, Any]) -> tuple[str, list[str], str]:
    """(mode, limits, hint) from ``meta["probe"]``; ("", [], "") for a setup() job."""
    found = meta.get("probe")
    if not isinstance(found, dict):
        return "", [], ""
    limits = [str(x) for x in found.get("limits") or [] if x]
    return str(found.get("mode") or "probe"), limits, str(found.get("hint") or "")


class ProbeNotice(Static):
    """Hidden unless the run's mode has limits; wraps rather than cut the hint."""

    DEFAULT_CSS = """
    ProbeNotice {
        height: auto;
        max-height: 3;
        padding: 0 1;
        color: $warning;
        display: none;
    }
    """

    def show(self, meta: dict[str, Any]) -> None:
        mode, limits, hint = probe(meta)
        self.display = bool(limits)
        if not limits:
            return
        t = Text()  # wraps: the hint is the way out of the limits, so all of it shows
        t.append(f"{mode} mode: ", "bold")
        n = len(limits)
        t.append(f"{n} limit{'s' if n != 1 else ''} (? lists them)")
        if hint:
            t.append(f"; {hint}")
        self.update(t)
