"""The machine's series the way nvitop shows a device: per gauge a bar for the newest
sample and a sparkline of the recent ones (one sample every 2 s, newest on the right).

Gauges: per GPU its utilisation and memory, with its temperature and power (first: on a
short terminal the rest is cut), then the job's CPU and resident memory and the host's
memory; under torchrun each rank's own GPU, named by rank. Hidden while the run has
recorded no machine series.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.app import RenderResult
from textual.geometry import Size
from textual.widget import Widget

from optitui.store.system import gpu_series, gpus
from optitui.tui import fmt
from optitui.tui.machine import LOW_UTIL
from optitui.tui.metric_history import MachineView

SPARKS = "▁▂▃▄▅▆▇█"
#: cells a gauge takes at least (label, value, bar, sparkline)
GAUGE_CELLS = 58
LABEL = 10
VALUE = 16
BAR = 10


@dataclass(frozen=True)
class Gauge:
    label: str
    value: str
    fraction: float | None  # of the bar (None: no bar)
    history: list[float]  # recent samples, oldest first (scaled 0..1)
    high: bool = False  # red: a bar near full
    low: bool = False  # yellow: a GPU with little to do
    note: str = ""  # after the sparkline (a GPU's temperature and power)


def bar(fraction: float, cells: int) -> str:
    n = max(0, min(cells, round(fraction * cells)))
    return "█" * n + "░" * (cells - n)


def spark(history: Sequence[float], cells: int) -> str:
    """The newest ``cells`` samples (or fewer), each 0..1, as block heights."""
    out = []
    for v in list(history)[-cells:]:
        if not math.isfinite(v):
            out.append(" ")
        else:
            out.append(SPARKS[max(0, min(len(SPARKS) - 1, int(v * (len(SPARKS) - 1) + 0.5)))])
    return "".join(out).rjust(cells)


def _recent(col: array[float] | None, n: int, cells: int) -> list[float]:
    if col is None:
        return []
    return list(col[max(0, n - cells) : n])


def _last(col: array[float] | None, n: int) -> float | None:
    if col is None:
        return None
    for i in range(n - 1, max(n - 8, 0) - 1, -1):
        if col[i] == col[i]:
            return col[i]
    return None


def _gib(used: float, total: float | None) -> str:
    if total:
        unit, size = ("GiB", 2**30) if total >= 2**30 else ("MiB", 2**20)
        return f"{used / size:.1f}/{total / size:.1f} {unit}"
    return fmt.nbytes(int(used))


def gauges(m: MachineView, cells: int, ranks: int) -> list[list[Gauge]]:
    """The gauges of one rank's machine series, with ``cells`` samples of history: each
    GPU's, then the process's and the host's, a list each (on lines of their own)."""
    c, n = m.columns, m.length
    out: list[Gauge] = []
    groups = [out]
    prefix = f"r{m.rank} " if ranks > 1 else ""
    cpu = _last(c.get("cpu_percent"), n)
    if cpu is not None:
        hist = _recent(c.get("cpu_percent"), n, cells)
        top = max(100.0, *hist)
        out.append(Gauge(f"{prefix}CPU", f"{cpu:.0f}%", cpu / top, [v / top for v in hist]))
    host_total = _last(c.get("host_mem_total_bytes"), n)
    rss = _last(c.get("rss_bytes"), n)
    if rss is not None:
        hist = _recent(c.get("rss_bytes"), n, cells)
        top = host_total or max(hist)
        out.append(Gauge(f"{prefix}RSS", fmt.nbytes(int(rss)), rss / top, [v / top for v in hist]))
    used = _last(c.get("host_mem_used_bytes"), n)
    if used is not None and host_total and not prefix:  # the host's: once
        hist = _recent(c.get("host_mem_used_bytes"), n, cells)
        frac = used / host_total
        out.append(
            Gauge(
                "host mem", _gib(used, host_total), frac, [v / host_total for v in hist], frac > 0.9
            )
        )
    for g in gpus(list(c)):
        out = []
        groups.append(out)
        util = _last(c.get(gpu_series(g, "util_percent")), n)
        if util is not None:
            hist = _recent(c.get(gpu_series(g, "util_percent")), n, cells)
            out.append(
                Gauge(
                    f"{prefix}GPU{g} util",
                    f"{util:.0f}%",
                    util / 100.0,
                    [v / 100.0 for v in hist],
                    low=util < LOW_UTIL,
                )
            )
        mem = _last(c.get(gpu_series(g, "mem_used_bytes")), n)
        total = _last(c.get(gpu_series(g, "mem_total_bytes")), n)
        if mem is not None:
            hist = _recent(c.get(gpu_series(g, "mem_used_bytes")), n, cells)
            top = total or max(hist)
            extra = []
            for key, unit in (("temp_c", "°C"), ("power_w", " W")):
                got = _last(c.get(gpu_series(g, key)), n)
                if got is not None:
                    extra.append(f"{got:.0f}{unit}")
            frac = mem / top
            scaled = [v / top for v in hist]
            out.append(
                Gauge(
                    f"{prefix}GPU{g} mem",
                    _gib(mem, total),
                    frac,
                    scaled,
                    frac > 0.95,
                    False,
                    " ".join(extra),
                )
            )
    return [group for group in groups[1:] + groups[:1] if group]  # the GPUs first


def gauge_text(g: Gauge, width: int) -> Text:
    """``label  value  ██████░░░░ ▁▂▃▅▇``: the bar and sparkline share what is left."""
    value_cells = max(VALUE, len(g.value) + 1)
    t = Text(no_wrap=True, overflow="ellipsis", end="")
    t.append(f"{g.label:<{LABEL}}"[:LABEL], "bold")
    t.append(f"{g.value:>{value_cells - 1}} ")
    style = "red" if g.high else "yellow" if g.low else "green"
    if g.fraction is not None:
        t.append(bar(g.fraction, BAR), style)
        t.append(" ")
    note = f" {g.note}" if g.note else ""
    rest = max(width - t.cell_len - len(note), 0)
    t.append(spark(g.history, rest), "cyan")
    t.append(note)
    t.truncate(width, pad=True)
    return t


class SystemPanel(Widget):
    """The machine's gauges, a few a line."""

    DEFAULT_CSS = """
    SystemPanel { height: auto; max-height: 12; }
    SystemPanel.-empty { display: none; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.machine: tuple[MachineView, ...] = ()
        self.add_class("-empty")

    def show(self, machine: tuple[MachineView, ...]) -> None:
        if machine is self.machine or (machine == () and self.machine == ()):
            return
        self.machine = machine
        self.set_class(not any(m.length for m in machine), "-empty")
        self.refresh(layout=True)

    def lines(self, width: int) -> list[Text]:
        per_line = max(1, width // GAUGE_CELLS)
        cell = (width - (per_line - 1) * 2) // per_line
        history = max(cell - LABEL - VALUE - BAR - 1, 4)
        groups = [g for m in self.machine for g in gauges(m, history, len(self.machine))]
        head = Text(no_wrap=True, end="")
        head.append("── machine ", "bold")
        head.append("─" * max(width - 11, 0), "dim")
        out = [head]
        for found in groups:
            for i in range(0, len(found), per_line):
                line = Text(no_wrap=True, end="")
                for j, g in enumerate(found[i : i + per_line]):
                    if j:
                        line.append("  ")
                    line.append_text(gauge_text(g, cell))
                out.append(line)
        return out

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines(width)) if self.machine else 0

    def render(self) -> RenderResult:
        return Text("\n", end="").join(self.lines(self.size.width))
