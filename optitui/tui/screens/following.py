"""A screen that follows one range test or race while the job runs it."""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

from textual import on, work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, OptionList, Static

from optitui.store.access import RunAccess
from optitui.store.reader import LIVE_STATES, CommandOutcome, Race, RangeTest
from optitui.tui.messages import Followed
from optitui.tui.range_follow import follow

Found = TypeVar("Found", RangeTest, Race)
Result = TypeVar("Result")


class Following(Screen[Result], Generic[Found, Result]):
    """Reads ``found_id`` (named after the command that asked for it) in a worker until
    it ends, was refused, or the run is over; :meth:`show` draws each new read into a
    head line, the plot, the list of answers (suggestions, the race's table) and a
    message line."""

    DEFAULT_CSS = """
    Following #head {
        height: auto;
        background: $panel;
        padding: 0 1;
    }
    Following OptionList {
        height: auto;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    Following #message {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, run: RunAccess, found_id: str) -> None:
        super().__init__()
        self.run = run
        self.found_id = found_id
        self.found: Found | None = None
        self.outcome: CommandOutcome | None = None
        self.run_state = "running"
        self.reads = 0  # reads handled; tests wait on it
        self._stop = threading.Event()

    def read(self, found_id: str) -> Found | None:
        raise NotImplementedError

    def plot(self) -> Widget:
        raise NotImplementedError

    def show(self) -> None:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        yield Static(id="head")
        yield self.plot()
        yield OptionList()
        yield Static(id="message")
        yield Footer()

    def on_mount(self) -> None:
        self.show()
        self.query_one(OptionList).focus()
        self._follow()

    def on_unmount(self) -> None:
        self._stop.set()

    @work(thread=True, exclusive=True, group="following", exit_on_error=False)
    def _follow(self) -> None:
        def deliver(found: Any, outcome: CommandOutcome | None, state: str) -> None:
            self.post_message(Followed(found, outcome, state))

        follow(self.run, self.read, self.found_id, deliver, self._stop)

    @on(Followed)
    def _polled(self, message: Followed) -> None:
        self.found, self.outcome, self.run_state = message.found, message.outcome, message.state
        self.reads += 1
        self.show()

    @property
    def running(self) -> bool:
        """It has not ended (or not begun) and still can."""
        refused = self.outcome is not None and not self.outcome.applied
        over = self.run_state not in LIVE_STATES
        return not refused and not over and (self.found is None or self.found.status == "running")
