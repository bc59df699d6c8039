"""Every metric besides the loss and the lr, as the metrics screen draws them.

Two sources: columns of the per-step batches (the user's own metrics, stored as
``user:<name>``; the gradient norm and the per-group health series) and values logged
between steps (``val_<name>``, an evaluation), which carry their own step column.
Pyramids (flat-cost min/max per plot column) are built for the logged values at once
(they are few) and for the per-step columns only once a screen asks for them
(:attr:`MetricHistory.wanted`): a dashboard that never opens the metrics screen pays
nothing for them at attach.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from optitui.store import system
from optitui.store.columns import MetricColumns
from optitui.store.metrics import USER_PREFIX
from optitui.tui.pyramid import Pyramid, PyramidView

#: per-step columns that are not metrics of their own (or are drawn on the main plots)
NOT_METRICS = frozenset({"step", "epoch", "time", "loss", "skipped", "branch", "run"})
#: the optimizer's health series: their names' first part (``update_ratio/0``)
HEALTH = ("grad_norm", "param_norm", "update_ratio")


@runtime_checkable
class LoggedRows(Protocol):
    """A source of values logged between steps (a run store's reader)."""

    def read_logged(self, into: MetricColumns | None = None) -> MetricColumns: ...


def shown_name(column: str) -> str | None:
    """The name a metric column is shown under, or None for a column that is not one."""
    if column in NOT_METRICS or column.startswith("lr/"):
        return None
    return column[len(USER_PREFIX) :] if column.startswith(USER_PREFIX) else column


def titled(name: str, groups: Sequence[str]) -> str:
    """A health series named by its group (``update_ratio/body``, as the export names it)
    when the group has a name; any other name as it is, its control characters escaped
    (a newline in a name would break the grid's rows)."""
    head, sep, tail = name.partition("/")
    if sep and head in HEALTH and tail.isdigit() and int(tail) < len(groups):
        label = groups[int(tail)]
        if label and label != f"group {tail}":  # a group without a name: by its index
            return f"{head}/{label}"
    return name if name.isprintable() else "".join(map(_printable, name))


def column_of(name: str, groups: Sequence[str]) -> str:
    """The metric a name given by the user is (``--pin update_ratio/head``): a health
    series named by its group's name, or ``group N``, is the group's index's; any other
    name is itself."""
    head, sep, tail = name.partition("/")
    if not sep or head not in HEALTH or tail.isdigit():
        return name
    if tail in groups:
        return f"{head}/{groups.index(tail)}"
    index = tail.removeprefix("group ")
    return f"{head}/{index}" if index != tail and index.isdigit() else name


def _printable(c: str) -> str:
    return c if c.isprintable() else c.encode("unicode_escape").decode("ascii")


def section(name: str, shared: frozenset[str] | None = None) -> str:
    """The section of the metrics screen a metric is shown in: validation, the optimizer's
    health, the part of its name before '/' (when ``shared``, the parts more than one name
    has: a prefix of its own is no group), or plain metrics."""
    head = name.split("/", 1)[0]
    if head in HEALTH:
        return "optimizer health"
    if name.startswith(("val_", "val/", "eval_", "eval/", "valid", "test_", "test/")):
        return "validation"
    if "/" in name and (shared is None or head in shared):
        return head
    return "metrics"


def sections(names: list[str]) -> dict[str, str]:
    """Each name's section, and the names in the order the screen shows them: by section
    (metrics, validation, the prefixes by name, the optimizer's health), then by name."""
    counts: dict[str, int] = {}
    for n in names:
        if "/" in n:
            head = n.split("/", 1)[0]
            counts[head] = counts.get(head, 0) + 1
    shared = frozenset(h for h, k in counts.items() if k > 1)
    out = {n: section(n, shared) for n in names}
    order = sorted(names, key=lambda n: (section_order(out[n]), out[n], n.lower()))
    return {n: out[n] for n in order}


#: sections in this order; any other (a name's prefix before '/') between, by name
FIRST_SECTIONS = ("metrics", "validation")
LAST_SECTIONS = ("optimizer health",)


def section_order(name: str) -> tuple[int, str]:
    if name in FIRST_SECTIONS:
        return FIRST_SECTIONS.index(name), ""
    if name in LAST_SECTIONS:
        return 10 + LAST_SECTIONS.index(name), ""
    return 5, name


@dataclass(frozen=True)
class MetricSeries:
    """One metric of one source, frozen at the length read so far."""

    name: str
    x: array[float]  # the step of each row
    values: PyramidView
    breaks: tuple[int, ...]  # rows where the step went back (a checkpoint restore)
    logged: bool  # values logged between steps: a few records, by their own step

    @property
    def length(self) -> int:
        return self.values.length


@dataclass(frozen=True)
class MachineView:
    """One rank's machine series (:mod:`optitui.store.system`), frozen at ``length``."""

    rank: int
    columns: dict[str, array[float]]
    length: int


@dataclass(frozen=True)
class MetricsView:
    """Every metric of a run; a name logged both per step and between steps has both."""

    series: tuple[MetricSeries, ...] = ()
    machine: tuple[MachineView, ...] = field(default=())  # by rank

    def names(self) -> list[str]:
        """Each metric's name once, by section, then by name."""
        return list(sections(sorted({s.name for s in self.series})))

    def of(self, name: str) -> list[MetricSeries]:
        return [s for s in self.series if s.name == name]


def _breaks(steps: array[float], lo: int, hi: int) -> list[int]:
    """Rows where the step went back: a restore (several values may be logged at a step)."""
    return [i for i in range(max(lo, 1), hi) if steps[i] < steps[i - 1]]


class MetricHistory:
    """The metric columns' pyramids and the logged values, extended by the feed's thread."""

    def __init__(self, pyramids: bool = True) -> None:
        self.pyramids = pyramids
        #: set (from any thread) once a screen draws the per-step metrics
        self.wanted = False
        self.logged = MetricColumns()
        self.logged_breaks: list[int] = []
        self.machine = system.SystemSeries()
        self._pyr: dict[tuple[bool, str], Pyramid] = {}

    def read(self, reader: object) -> bool:
        """Take new logged values from ``reader`` (when it keeps them), and once a screen
        draws them the machine's series; True if any came."""
        conn = getattr(reader, "conn", None)  # a run store's reader (not a remote run)
        machine = False
        if self.wanted and isinstance(conn, sqlite3.Connection):
            before = self.machine.last_id
            system.read(conn, into=self.machine)
            machine = self.machine.last_id != before
        if not isinstance(reader, LoggedRows):
            return machine
        before = self.logged.length
        reader.read_logged(into=self.logged)
        steps = self.logged.columns.get("step")
        if steps is not None and self.logged.length > before:
            self.logged_breaks += _breaks(steps, before, self.logged.length)
        return self.logged.length > before or machine

    def derive(self, metrics: MetricColumns) -> bool:
        """Extend the pyramids; True when one was started (a view must be handed on)."""
        if not self.pyramids:
            return False
        started = False
        sources = [(True, self.logged)] + ([(False, metrics)] if self.wanted else [])
        for logged, cols in sources:
            for name, col in cols.columns.items():
                if shown_name(name) is None:
                    continue
                pyr = self._pyr.get((logged, name))
                if pyr is None:
                    pyr = self._pyr[(logged, name)] = Pyramid()
                    started = True
                pyr.update(col, cols.length)
        return started and self.wanted

    def view(self, metrics: MetricColumns, breaks: tuple[int, ...]) -> MetricsView:
        """A frozen view of every metric (cheap: no copies)."""
        out: list[MetricSeries] = []
        for logged, cols, brk in (
            (False, metrics, breaks),
            (True, self.logged, tuple(self.logged_breaks)),
        ):
            steps = cols.columns.get("step")
            if steps is None or not cols.length:
                continue
            for column, values in cols.columns.items():
                name = shown_name(column)
                if name is None:
                    continue
                pyr = self._pyr.get((logged, column))
                n = cols.length
                pv = pyr.view(values, n) if pyr is not None else PyramidView(values, n, ())
                out.append(MetricSeries(name, steps, pv, brk, logged))
        machine = tuple(
            MachineView(rank, dict(cols.columns), cols.length)
            for rank, cols in sorted(self.machine.ranks.items())
        )
        return MetricsView(tuple(out), machine)
