"""Under torchrun: each rank's pace, memory and GPU utilisation on one line, the slowest
rank and any GPU busy less than 30% of the time marked."""

from __future__ import annotations

import statistics
from typing import Any

from rich.text import Text
from textual.widgets import Static

from optitui.tui import fmt, machine

#: a rank this much slower than the median is called a straggler
STRAGGLER_RATIO = 0.8


def ranks(meta: dict[str, Any]) -> list[dict[str, Any]]:
    found = meta.get("ranks")
    if not isinstance(found, list):
        return []
    return [r for r in found if isinstance(r, dict) and isinstance(r.get("rank"), int)]


def slowest(rows: list[dict[str, Any]]) -> tuple[int | None, bool]:
    """(rank with the fewest steps/s, whether it is a straggler) of ``rows``."""
    paces = [(float(r["steps_per_s"]), r["rank"]) for r in rows if _number(r.get("steps_per_s"))]
    if len(paces) < 2:
        return None, False
    pace, rank = min(paces)
    median = statistics.median(p for p, _ in paces)
    return rank, median > 0 and pace < STRAGGLER_RATIO * median


def underused(rows: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(rank, GPU utilisation %) of the ranks whose GPU is busy less than
    :data:`~optitui.tui.machine.LOW_UTIL`, from each rank's newest machine sample."""
    out = []
    for r in rows:
        util = machine.utilisation("", machine.sample(r.get("system")))
        if util is not None and util < machine.LOW_UTIL:
            out.append((r["rank"], util))
    return out


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def describe(meta: dict[str, Any]) -> Text:
    """The slowest rank first (so a narrow terminal still shows it), then every rank."""
    rows = ranks(meta)
    slow, straggler = slowest(rows)
    paces = [float(r["steps_per_s"]) for r in rows if _number(r.get("steps_per_s"))]
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"{len(rows)} ranks", "bold")
    if slow is not None:
        style = "bold red" if straggler else "bold yellow"
        pace = next(r.get("steps_per_s") for r in rows if r["rank"] == slow)
        t.append(f" · slowest r{slow} {fmt.rate(pace)} steps/s", style)
        median = statistics.median(paces)
        t.append(f" (straggler: median {fmt.rate(median)})" if straggler else "", style)
    idle = underused(rows)
    if idle:
        t.append(" · low GPU use " + ", ".join(f"r{r} {u:.0f}%" for r, u in idle), "bold yellow")
    for r in rows:
        style = "yellow" if r["rank"] == slow else ""
        pace = fmt.rate(r.get("steps_per_s")) if _number(r.get("steps_per_s")) else "–"
        t.append(" │ ", "dim")
        t.append(f"r{r['rank']} {pace}/s", style)
        mem = r.get("device_mem")
        if isinstance(mem, int):
            t.append(f" {fmt.nbytes(mem)}", style or "dim")
        util = machine.utilisation("", machine.sample(r.get("system")))
        if util is not None:
            t.append(f" GPU {util:.0f}%", "bold yellow" if util < machine.LOW_UTIL else style)
    return t


class RanksLine(Static):
    """Shown only when the job runs on more than one rank."""

    DEFAULT_CSS = """
    RanksLine {
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        padding: 0 1;
        display: none;
    }
    """

    def show(self, meta: dict[str, Any]) -> None:
        many = len(ranks(meta)) > 1
        self.display = many
        if many:
            self.update(describe(meta))
