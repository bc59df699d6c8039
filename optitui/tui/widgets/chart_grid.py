"""A grid of small charts, one per metric, in sections, with a cursor.

One widget draws every chart it shows (a widget per chart would make a run with
hundreds of metrics slow to open): only the charts in view are drawn, each from its
decimated points, and a chart is drawn again only when what it shows changed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.app import RenderResult
from textual.message import Message
from textual.widget import Widget

from optitui.tui.chart_text import draw
from optitui.tui.history import HistoryView, empty_view
from optitui.tui.markers import Marker
from optitui.tui.metric_charts import Look, chart_for
from optitui.tui.metric_history import sections, titled
from optitui.tui.overlay import Overlay

#: about this many cells a chart across (the grid takes as many as fit, at least one)
CHART_CELLS = 52
#: the lowest a chart is drawn: title, 5 rows of canvas, the strip
MIN_ROWS = 7
#: the most rows a chart takes, however tall the terminal
MAX_ROWS = 14
GAP = 1


@dataclass(frozen=True)
class Band:
    """One line of the grid: a section's title (height 1) or a row of charts."""

    title: str
    names: tuple[str, ...] = ()


def matches(name: str, words: str) -> bool:
    """Whether every word of the filter is in the name (case ignored)."""
    low = name.lower()
    return all(w in low for w in words.lower().split())


class ChartGrid(Widget, can_focus=True):
    """The metrics' charts; arrows move the cursor, the wheel scrolls."""

    DEFAULT_CSS = """
    ChartGrid { height: 1fr; min-height: 8; }
    """

    class Opened(Message):
        """Enter on a chart."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: HistoryView = empty_view()
        self.markers: Sequence[Marker] = ()
        self.overlays: tuple[Overlay, ...] = ()
        self.look = Look()
        self.groups: tuple[str, ...] = ()  # the run's group names (health series by name)
        self.words = ""
        self.names: list[str] = []  # in view of the filter, in order
        self.cursor = 0
        self.top = 0  # the first band shown
        self.frame_seconds = 0.0
        self.frames = 0
        self.drawn: list[str] = []  # the charts in the last frame
        self._sections: dict[str, str] = {}  # every metric's section, in the grid's order
        self._bands: list[Band] = []
        self._bands_for: tuple[list[str], int] | None = None  # the names and columns of them
        self._cache: dict[tuple[str, int, int, bool], list[Text]] = {}

    # -- inputs ------------------------------------------------------------------------
    def show(
        self,
        view: HistoryView,
        markers: Sequence[Marker],
        overlays: tuple[Overlay, ...],
        look: Look,
    ) -> None:
        # by identity: a view holds a million values, a new one comes with every read
        same = view is self.view and markers is self.markers
        if same and overlays == self.overlays and look == self.look:
            return
        self.view, self.markers, self.overlays, self.look = view, markers, overlays, look
        self._cache.clear()
        self._refilter()
        self.refresh()

    def set_filter(self, words: str) -> None:
        if words != self.words:
            self.words = words
            self._refilter()
            self.cursor, self.top = 0, 0
            self.refresh()

    def _refilter(self) -> None:
        chosen = self.selected
        self._sections = sections(self.view.metrics.names())
        self.names = [
            n
            for n in self._sections
            if matches(n, self.words) or matches(titled(n, self.groups), self.words)
        ]
        if chosen in self.names:
            self.cursor = self.names.index(chosen)
        self.cursor = min(self.cursor, max(len(self.names) - 1, 0))

    @property
    def selected(self) -> str | None:
        return self.names[self.cursor] if 0 <= self.cursor < len(self.names) else None

    # -- layout ------------------------------------------------------------------------
    @property
    def columns(self) -> int:
        return max(1, round(self.size.width / CHART_CELLS))

    def chart_width(self) -> int:
        return max(16, (self.size.width - GAP * (self.columns - 1)) // self.columns)

    def chart_rows(self) -> int:
        """Rows per chart: every chart in view at up to MAX_ROWS when they fit, else as
        many as fit at MIN_ROWS or more."""
        h = max(self.size.height, MIN_ROWS)
        bands = self._bands if self._bands_for == (self.names, self.columns) else self.bands()
        heads = sum(1 for b in bands if b.title)
        rows = len(bands) - heads
        if rows and (h - heads) // rows >= MIN_ROWS:
            return min(MAX_ROWS, (h - heads) // rows)
        per = max(1, (h - 1) // (MIN_ROWS + 1))
        return min(MAX_ROWS, max(MIN_ROWS, (h - per) // per))

    def bands(self) -> list[Band]:
        if self._bands_for == (self.names, self.columns):
            return self._bands
        out: list[Band] = []
        cols = self.columns
        current: str | None = None
        row: list[str] = []
        for name in self.names:
            sec = self._sections[name]
            if sec != current:
                if row:
                    out.append(Band("", tuple(row)))
                    row = []
                out.append(Band(sec))
                current = sec
            row.append(name)
            if len(row) == cols:
                out.append(Band("", tuple(row)))
                row = []
        if row:
            out.append(Band("", tuple(row)))
        self._bands, self._bands_for = out, (self.names, self.columns)
        return out

    def _band_of(self, bands: list[Band], name: str) -> int:
        return next((i for i, b in enumerate(bands) if name in b.names), 0)

    def _keep_cursor_in_view(self, bands: list[Band]) -> None:
        name = self.selected
        if name is None:
            self.top = 0
            return
        at = self._band_of(bands, name)
        if at < self.top:
            self.top = at - 1 if at > 0 and bands[at - 1].title else at
        while self.top < at and self._height(bands, self.top, at + 1) > self.size.height:
            self.top += 1

    def _height(self, bands: list[Band], start: int, stop: int) -> int:
        h = self.chart_rows()
        return sum(1 if b.title else h for b in bands[start:stop])

    # -- drawing -----------------------------------------------------------------------
    def render(self) -> RenderResult:
        t0 = time.perf_counter()
        width, height = self.size.width, self.size.height
        if not self.names:
            what = "no metric matches the filter" if self.words else "no metrics recorded yet"
            self.drawn, self.frames = [], self.frames + 1
            return Text(f" {what}", "dim")
        bands = self.bands()
        self._keep_cursor_in_view(bands)
        lines: list[Text] = []
        drawn: list[str] = []
        cw, ch = self.chart_width(), self.chart_rows()
        for band in bands[self.top :]:
            if len(lines) >= height:
                break
            if band.title:
                head = Text(no_wrap=True, end="")
                head.append(f"── {band.title} ", "bold")
                head.append("─" * max(width - len(band.title) - 4, 0), "dim")
                lines.append(head)
                continue
            charts = [self._chart(n, cw, ch) for n in band.names]
            drawn += band.names
            for r in range(ch):
                line = Text(no_wrap=True, end="")
                for i, c in enumerate(charts):
                    if i:
                        line.append(" " * GAP)
                    line.append_text(c[r])
                lines.append(line)
        out = Text("\n").join(lines[:height])
        out.end = ""
        self.drawn = drawn
        self.frame_seconds = time.perf_counter() - t0
        self.frames += 1
        return out

    def _chart(self, name: str, width: int, height: int) -> list[Text]:
        chosen = name == self.selected and self.has_focus
        key = (name, width, height, chosen)
        got = self._cache.get(key)
        if got is None:
            chart = chart_for(
                name,
                self.view,
                self.look,
                width,
                overlays=self.overlays,
                markers=self.markers,
                selected=chosen,
                groups=self.groups,
            )
            got = self._cache[key] = draw(chart, width, height).lines
        return got

    # -- keys and the mouse ------------------------------------------------------------
    def move(self, by: int) -> None:
        if self.names:
            self.cursor = min(max(self.cursor + by, 0), len(self.names) - 1)
            self.refresh()

    def move_row(self, down: bool) -> None:
        """The chart above or below (the next band of charts, in the same column)."""
        name = self.selected
        if name is None:
            return
        bands = [b for b in self.bands() if not b.title]
        at = self._band_of(bands, name)
        col = bands[at].names.index(name)
        to = at + (1 if down else -1)
        if 0 <= to < len(bands):
            target = bands[to].names[min(col, len(bands[to].names) - 1)]
            self.cursor = self.names.index(target)
            self.refresh()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_key(self, event: events.Key) -> None:
        moves = {"left": -1, "right": 1}
        if event.key in moves:
            self.move(moves[event.key])
        elif event.key in ("up", "down"):
            self.move_row(event.key == "down")
        elif event.key == "enter" and self.selected is not None:
            self.post_message(self.Opened(self.selected))
        else:
            return
        event.stop()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self.move_row(True)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.move_row(False)
