"""Polling a run store for what is new: the viewer's only way of reading a job.

Textual-free on purpose: :func:`follow` runs in a worker thread, checks a
``threading.Event`` to stop, and hands each :class:`FeedUpdate` to a callback
(the app's ``post_message``). It waits until the UI has consumed one update
before reading the next, so a slow screen slows the reads instead of
queueing messages without bound.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from optitui.store.layout import RunPaths
from optitui.store.output_tail import OutputTail
from optitui.store.reader import EventRow, RunReader, Status
from optitui.tui.history import History, HistoryView


class FeedEnded(Exception):
    """Nothing more will come from this run; the message says why."""


class StoreMismatch(FeedEnded):
    """The run store was written by another version of optitui; nothing more is read."""


@dataclass(frozen=True)
class FeedUpdate:
    """Everything new since the previous update. ``view`` always covers the full history."""

    view: HistoryView
    grew: bool
    status: Status
    meta: dict[str, Any] | None  # only when changed
    groups: list[dict[str, Any]] | None  # only when a new snapshot arrived
    group_step: int
    events: tuple[EventRow, ...]
    output: tuple[str, ...]
    first: bool  # the first update: the full history so far
    #: how the connection to a remote run is doing, when it is not well (None: fine or local)
    link: str | None = None


@dataclass
class Handed:
    """What a feed has handed on so far, so that each update carries only what is new."""

    meta: dict[str, Any] | None = None
    groups: list[dict[str, Any]] | None = None
    last_event: int = 0
    polls: int = 0

    def update(
        self,
        history: History,
        grew: bool,
        status: Status,
        meta: dict[str, Any],
        group_step: int,
        groups: list[dict[str, Any]],
        events: list[EventRow],
        output: list[str],
        link: str | None = None,
        view: HistoryView | None = None,
    ) -> FeedUpdate:
        """``view``: what to draw, when it is not ``history``'s (a first read on demand)."""
        new_meta = meta if meta != self.meta else None
        self.meta = meta
        new_groups = groups if groups != self.groups else None
        self.groups = groups
        if events:
            self.last_event = events[-1].id
        self.polls += 1
        return FeedUpdate(
            view=history.view() if view is None else view,
            grew=grew,
            status=status,
            meta=new_meta,
            groups=new_groups,
            group_step=group_step,
            events=tuple(events),
            output=tuple(output),
            first=self.polls == 1,
            link=link,
        )


class Feed(Protocol):
    """Where a dashboard's updates come from: a run store here, or a run over ssh."""

    history: History  # what it has read (the feed's thread extends it)

    def next(self) -> FeedUpdate:
        """Everything new since the last call (the whole history on the first)."""
        ...

    def ready(self, wait: float = 0.0) -> FeedUpdate | None:
        """The first update when it was read ahead and is done, waiting at most ``wait``
        seconds for that read to end (None: :meth:`next` reads it, or waits for it)."""
        ...

    def close(self) -> None: ...


class StoreFeed:
    """Reads one run store incrementally. Owned by one thread at a time.

    :meth:`prefetch` lets a caller start the first (largest) read before the
    app exists, e.g. while Textual is being imported; :meth:`next` hands that
    read over to the thread that follows the store.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        ema_beta: float = 0.98,
        clock: Callable[[], float] = time.time,
        events_per_poll: int = 2000,
        pyramids: bool = True,
    ) -> None:
        self.paths = RunPaths(run_dir)
        self.history = History(ema_beta=ema_beta, pyramids=pyramids)
        self.clock = clock
        self.events_per_poll = events_per_poll
        self._reader: RunReader | None = None
        self._tail = OutputTail(self.paths.output)
        self.handed = Handed()
        self._version_checked = False
        self._prefetch: threading.Thread | None = None
        self._prefetched: FeedUpdate | BaseException | None = None

    def prefetch(self) -> None:
        """Start the first poll in a background thread (daemon: it never blocks exit)."""

        def run() -> None:
            try:
                self._prefetched = self.poll()
            except BaseException as exc:  # handed to next(), which raises it there
                self._prefetched = exc

        self._prefetch = threading.Thread(target=run, name="optitui-prefetch", daemon=True)
        self._prefetch.start()

    def next(self) -> FeedUpdate:
        """The prefetched update if there is one, else a fresh poll."""
        if self._prefetch is not None:
            got = self._take_prefetched()
            if isinstance(got, BaseException):
                raise got
            if got is not None:
                return got
        return self.poll()

    def ready(self, wait: float = 0.0) -> FeedUpdate | None:
        """The prefetched update once its read has ended well, waiting at most ``wait``
        seconds for it (None: no prefetch, still reading, or failed: :meth:`next` waits for
        it, or raises)."""
        pre = self._prefetch
        if pre is not None and wait > 0:
            pre.join(wait)
        if pre is None or pre.is_alive() or not isinstance(self._prefetched, FeedUpdate):
            return None
        got = self._take_prefetched()
        return got if isinstance(got, FeedUpdate) else None

    def _take_prefetched(self) -> FeedUpdate | BaseException | None:
        assert self._prefetch is not None
        self._prefetch.join()
        self._prefetch = None
        got, self._prefetched = self._prefetched, None
        return got

    def poll(self) -> FeedUpdate:
        if self._reader is None:
            self._reader = RunReader(self.paths.root)
        r = self._reader
        if not self._version_checked:
            self._check_version(r)
        # the first read (the whole history) goes on screen before it is smoothed and its
        # pyramids built: the next poll does that, and hands the same picture again
        first = self.handed.polls == 0
        view = self._first_view(r) if first else None
        if view is not None:
            grew = True
        else:
            grew = self.history.read(r, quick=first)
            if not first:
                grew = self.history.refine() or grew
        meta = r.meta(refresh=True)
        step, groups = r.groups()
        events = r.events(self.handed.last_event, limit=self.events_per_poll)
        status = r.status(now=self.clock())
        return self.handed.update(
            self.history, grew, status, meta, step, groups, events, self._tail.read(), view=view
        )

    def _first_view(self, r: RunReader) -> HistoryView | None:
        """The first update's history when it is not read whole (None: it is)."""
        return None

    def _check_version(self, r: RunReader) -> None:
        """Raise StoreMismatch for a store of another version, before reading its tables.

        The writer records the metadata and its version in one transaction, so
        an empty metadata table is a store being created, not an old one.
        """
        if not r.meta(refresh=True):
            return
        problem = r.schema_problem()
        if problem is not None:
            raise StoreMismatch(problem)
        self._version_checked = True

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def follow(
    feed: Feed,
    deliver: Callable[[FeedUpdate], None],
    consumed: threading.Event,
    stop: threading.Event,
    interval: float | Callable[[], float] = 0.25,
    problem: Callable[[str], None] | None = None,
    fatal: Callable[[str], None] | None = None,
    handed: bool = False,
) -> None:
    """Poll ``feed`` until ``stop`` is set, delivering one update at a time, ``interval``
    seconds apart (a function: asked before each wait, see :mod:`optitui.tui.pace`);
    ``handed``: the caller took the first update (:meth:`Feed.ready`) and hands it on
    itself, so the first read waits as one after a delivery: until ``consumed``, then
    the interval.

    A store that cannot be read (not created yet, damaged, a disk gone) is
    reported once through ``problem`` and retried: a viewer outlives hiccups.
    A store of another version (any :class:`FeedEnded`) is reported through
    ``fatal``, and the feed ends.
    """
    last_problem = ""
    wait = interval if callable(interval) else lambda: interval
    try:
        if handed:
            while not consumed.wait(0.1):
                if stop.is_set():
                    return
            stop.wait(wait())
        while not stop.is_set():
            try:
                update = feed.next()
            except FeedEnded as exc:
                (fatal or problem or (lambda _text: None))(str(exc))
                return
            except (sqlite3.Error, OSError, ValueError) as exc:
                text = f"cannot read the run store: {exc}"
                if text != last_problem and problem is not None:
                    problem(text)
                last_problem = text
                feed.close()  # reopen on the next try
                stop.wait(max(wait(), 0.5))
                continue
            last_problem = ""
            consumed.clear()
            deliver(update)
            while not consumed.wait(0.1):  # backpressure: the UI takes one at a time
                if stop.is_set():
                    return
            stop.wait(wait())
    finally:
        feed.close()
