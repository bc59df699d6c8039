"""Following a run that is overlaid on another's plots: read-only, light, and dropped when
it goes away.

An overlaid run is only ever drawn as lines (its smoothed loss, its lr), so its history
keeps no min/max pyramids. A run whose directory is removed while it is overlaid ends
its feed (:class:`RunVanished`), as does a store of another schema (named with the
optitui that wrote it). A run written by another optitui version in the same schema is
read as usual; :attr:`OverlayFeed.version` names that version, and the dashboard never
steers such a run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from optitui import __version__
from optitui.store.layout import RunPaths
from optitui.store.reader import RunReader
from optitui.tui.feed import FeedEnded, FeedUpdate, StoreFeed, StoreMismatch
from optitui.tui.history import HistoryView, empty_view


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
        self, run_dir: Path, *, ema_beta: float = 0.98, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(run_dir, ema_beta=ema_beta, clock=clock, pyramids=False)
        self.version: str | None = None

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
