"""Following a run that is overlaid on another's plots: read-only, light, and dropped when
it goes away.

An overlaid run is only ever drawn as lines (its smoothed loss, its lr), so its history
keeps no min/max pyramids. Of a long run, the first update reads only the rows the plots
ask for (:mod:`optitui.store.on_demand`): each line is the value at the end of each plot
column, and its smoothed loss comes from the window of values before it, as a quick read
of the whole history draws it (see :mod:`optitui.tui.history`); the next update reads the
whole history, which any zoom then draws from.

A run whose directory is removed while it is overlaid ends its feed (:class:`RunVanished`),
as does a store of another schema (named with the optitui that wrote it). A run written
by another optitui version in the same schema is read as usual;
:attr:`OverlayFeed.version` names that version, and the dashboard never steers such a run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from optitui import __version__
from optitui.store.columns import MetricColumns
from optitui.store.layout import RunPaths
from optitui.store.on_demand import StoredRows
from optitui.store.reader import RunReader
from optitui.tui import history
from optitui.tui.feed import FeedEnded, FeedUpdate, StoreFeed, StoreMismatch
from optitui.tui.history import History, HistoryView, empty_view


class RunVanished(FeedEnded):
    """The run's directory is gone."""


def other_version(meta: dict[str, object]) -> str | None:
    """The optitui version that wrote a run, when it is not this one (None: this one, or
    a store that has not said yet)."""
    version = meta.get("optitui_version")
    return version if isinstance(version, str) and version != __version__ else None


class OverlayFeed(StoreFeed):
    """A :class:`StoreFeed` without pyramids that ends when its run directory vanishes."""

    def __init__(
        self,
        run_dir: Path,
        *,
        ema_beta: float = 0.98,
        clock: Callable[[], float] = time.time,
        on_demand: bool = True,
    ) -> None:
        super().__init__(run_dir, ema_beta=ema_beta, clock=clock, pyramids=False)
        self.version: str | None = None
        self.on_demand = on_demand  # a long run's first update reads rows as drawn

    def poll(self) -> FeedUpdate:
        if not self.paths.exists():
            raise RunVanished(f"{self.paths.root.name} is gone (its directory was removed)")
        return super().poll()

    def _check_version(self, r: RunReader) -> None:
        meta = r.meta(refresh=True)
        problem = r.schema_problem() if meta else None
        if problem is not None:
            by = meta.get("optitui_version")
            who = f"optitui {by}" if isinstance(by, str) else "another optitui"
            raise StoreMismatch(f"{self.paths.root.name} was written by {who}: {problem}")
        self.version = other_version(meta)
        super()._check_version(r)

    def _first_view(self, r: RunReader) -> HistoryView | None:
        """A long run's history with its rows read as they are drawn (None: a run short
        enough that a quick read of it smooths every row, read whole as before)."""
        if not self.on_demand:
            return None
        rows = StoredRows(RunReader(self.paths.root))
        if not history.quick_enough(rows.length, self.history.ema_beta):
            return None
        first = History(ema_beta=self.history.ema_beta, pyramids=False)
        first.read(OnDemand(rows, r), quick=True)
        return first.view()


class OnDemand:
    """A run's rows for :meth:`History.read`: the metric columns read as they are drawn
    (:class:`StoredRows`), the rest (validation, logged values) from ``reader``."""

    def __init__(self, rows: StoredRows, reader: RunReader) -> None:
        self.rows, self.reader = rows, reader

    def read_metrics(self, into: MetricColumns | None = None) -> MetricColumns:
        out = into if into is not None else MetricColumns()
        if out.length:
            raise ValueError("rows read on demand start a history; they never extend one")
        out.columns = {name: self.rows.column(name) for name in self.rows.names}
        out.length = self.rows.length
        out.last_id = self.rows.ids[-1] if self.rows.ids else 0
        return out

    def val(self, after_id: int = 0) -> list[tuple[int, int, int, float | None]]:
        return self.reader.val(after_id)

    def read_logged(self, into: MetricColumns | None = None) -> MetricColumns:
        return self.reader.read_logged(into)


@dataclass
class OverlayRun:
    """One overlaid run as the dashboard follows it."""

    paths: RunPaths
    feed: OverlayFeed
    color: tuple[int, int, int] = (255, 255, 255)  # given when it is overlaid
    name: str = ""  # its short name in the legends
    view: HistoryView = field(default_factory=empty_view)
    group_names: tuple[str, ...] = ()
    stop: threading.Event = field(default_factory=threading.Event)
    consumed: threading.Event = field(default_factory=threading.Event)
    updates: int = 0

    @property
    def key(self) -> str:
        return run_key(self.paths.root)

    @property
    def label(self) -> str:
        return self.paths.root.name


def run_key(run_dir: Path | str) -> str:
    """How a run directory is told apart from others, however it was named."""
    return os.path.abspath(run_dir)


def overlay_run(run_dir: Path, ema_beta: float = 0.98, prefetch: bool = False) -> OverlayRun:
    """A run to overlay; ``prefetch`` starts reading its history at once (in a thread)."""
    feed = OverlayFeed(run_dir, ema_beta=ema_beta)
    if prefetch:
        feed.prefetch()
    return OverlayRun(RunPaths(Path(run_dir)), feed)
