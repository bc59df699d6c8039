"""A plot of run history, redrawn on the app's clock from a decimated view."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import RenderResult
from textual.geometry import Size
from textual_plotext import PlotextPlot

from optitui.tui import decimate, fmt
from optitui.tui.axis import axis_for
from optitui.tui.decimate import Points
from optitui.tui.history import HistoryView, empty_view
from optitui.tui.markers import CATEGORIES, Category, Marker, in_view
from optitui.tui.plot_text import DIMMABLE, dimmed, figure_text

#: columns taken by the y tick labels and the frame; the rest hold data
AXIS_COLUMNS = 10
#: the line above the figure: title, legend, markers' key
HEADER_ROWS = 1
SERIES_COLORS = ("cyan", "orange", "green", "magenta", "blue", "red", "yellow", "white")
#: plotext's names that rich spells otherwise
RICH_NAMES = {"orange": "dark_orange", "gray": "grey50"}


@dataclass(frozen=True)
class Series:
    """One plotted series: a line (braille) or points (``scatter``, one glyph each)."""

    points: Points
    color: Any
    marker: str = "braille"
    scatter: bool = False


def _rich_color(color: Any) -> str:
    """The rich style of a series colour, dimmed stand-ins included."""
    if isinstance(color, tuple):
        return f"dim {RICH_NAMES.get(DIMMABLE[color[2] - 2], DIMMABLE[color[2] - 2])}"
    return RICH_NAMES.get(str(color), str(color))


def branch_color(color: str, abandoned: bool) -> Any:
    """The colour of a series on one piece of a branch: steps the run left by restoring an
    earlier checkpoint are drawn dimmed."""
    return dimmed(color) if abandoned else color


class HistoryPlot(PlotextPlot):
    """Base for the loss and lr plots: holds the newest view, draws when asked.

    Data arrives with :meth:`show` as fast as the store feed reads it; the
    app calls :meth:`redraw` a few times a second, and a frame is only built
    when something changed. ``frame_seconds`` is the cost of the last frame
    (decimation, plotext and conversion to rich Text), which the benchmark reports.
    """

    DEFAULT_CSS = """
    HistoryPlot {
        height: 1fr;
        width: 1fr;
        min-height: 5;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.view: HistoryView = empty_view()
        self.markers: list[Marker] = []
        self.show_all = True
        self.window = 2000
        self.log_y = False
        self.dirty = True
        self.frame_seconds = 0.0
        self.decimate_seconds = 0.0  # of which: choosing the points (the rest is plotext)
        self.frames = 0
        self.drawn_length = -1  # history length of the last frame drawn
        self._drawn_size: Size | None = None
        self._text: Text | None = None
        self._legend: list[tuple[str, str, Any]] = []
        self.marker_categories: list[Category] = []
        self.marker_key = True  # name the markers' glyphs on the title line

    # -- inputs --------------------------------------------------------------------
    def show(self, view: HistoryView) -> None:
        self.view = view
        self.dirty = True

    def set_markers(self, markers: list[Marker]) -> None:
        self.markers = markers
        self.dirty = True

    def set_options(self, *, show_all: bool, window: int, log_y: bool | None = None) -> None:
        self.show_all, self.window = show_all, window
        if log_y is not None:
            self.log_y = log_y
        self.dirty = True

    def shows(self, length: int) -> bool:
        """True once the plot has drawn a history of ``length`` rows, or is hidden (a
        narrow terminal shows one plot at a time): nothing more is coming."""
        return not self.size.area or (self.drawn_length == length and not self.dirty)

    @property
    def buckets(self) -> int:
        """How many columns of data the plot shows: one min/max bucket each."""
        return max(8, self.size.width - AXIS_COLUMNS)

    # -- drawing -------------------------------------------------------------------
    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._theme_changed())

    def _theme_changed(self) -> None:
        self.dirty = True

    def redraw(self, force: bool = False) -> bool:
        """Rebuild the figure if the data or the size changed; True when it did."""
        if not self._build(force):
            return False
        self.refresh()
        return True

    def _build(self, force: bool) -> bool:
        size = self.size
        if not (self.dirty or force or size != self._drawn_size) or not size.area:
            return False
        t0 = time.perf_counter()
        plt = self.plt
        plt.clear_figure()
        # the first line is the plot's own: title, legend and the markers' key
        rows = max(size.height - HEADER_ROWS, 1)
        self._legend = []
        series, x_range = self.draw(plt)
        self._finish(plt, series, x_range, rows)
        self.decimate_seconds = time.perf_counter() - t0
        plt.plotsize(size.width, rows)
        plt._set_size(size.width, rows)  # see PlotextPlot.render: both are needed
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        # plotext's build is not repeatable (a log axis would be applied twice), so
        # one figure is built once and its text kept until the next redraw
        figure = figure_text(plt)
        self._text = Text(end="")
        self._text.append_text(self.header(size.width))
        self._text.append("\n")
        self._text.append_text(figure)
        self.dirty = False
        self._drawn_size = size
        self.drawn_length = self.view.length
        self.frame_seconds = time.perf_counter() - t0
        self.frames += 1
        return True

    def draw(self, plt: Any) -> tuple[list[Series], tuple[float, float] | None]:
        """This plot's series (and their step range) for a fresh plotext figure ``plt``."""
        raise NotImplementedError

    def title(self, short: bool = False) -> str:
        """What the plot shows; ``short`` when the line is narrow."""
        raise NotImplementedError

    def render(self) -> RenderResult:
        self._build(force=self._text is None)
        return self._text if self._text is not None else Text("")

    def _finish(
        self,
        plt: Any,
        series: list[Series],
        x_range: tuple[float, float] | None,
        rows: int,
    ) -> None:
        """Put the series on a y axis of their own range (a flat one padded) with a strip
        for the markers along its bottom, and whole-step x ticks."""
        self.marker_categories = []
        ys = [y for s in series for y in s.points.ys]
        if not ys or x_range is None:
            return
        log = self.log_scale()
        axis = axis_for(min(ys), max(ys), log)
        canvas = max(rows - 3, 2)  # less the frame's two lines and the step labels
        row = (axis.hi - axis.lo) / max(canvas - 1, 1)
        strip = axis.lo - row  # the bottom row holds the markers, below every curve
        for s in series:
            ys_plot = [axis.to_plot(y) for y in s.points.ys]
            if s.scatter:
                plt.scatter(s.points.xs, ys_plot, marker=s.marker, color=s.color)
            else:
                plt.plot(s.points.xs, ys_plot, marker=s.marker, color=s.color)
        x_lo, x_hi = x_range
        shown = self.markers_in_view(x_lo, x_hi)
        by_category: dict[Category, list[float]] = {}
        for m in shown:
            by_category.setdefault(m.category, []).append(m.step)
        for category, xs in by_category.items():
            plt.scatter(xs, [strip] * len(xs), marker=category.glyph, color=category.rgb)
        self.marker_categories = [c for c in CATEGORIES if c in by_category]
        plt.ylim(strip - row * 0.25, axis.hi + row * 0.25)
        positions, labels = axis.ticks(canvas)
        plt.yticks(positions, labels)
        self.step_axis(plt, x_lo, x_hi)

    def log_scale(self) -> bool:
        return self.log_y

    def markers_in_view(self, x_lo: float, x_hi: float) -> list[Marker]:
        """At most one marker every few columns: frequent events must not fill the strip."""
        return in_view(self.markers, x_lo, x_hi, max(1, self.buckets // 2))

    def legend(self) -> list[tuple[str, str, Any]]:
        """(glyph, name, colour) of each series in the legend."""
        return self._legend

    def header(self, width: int) -> Text:
        """The plot's first line: its title, the series' legend and the markers' key,
        within ``width`` less a column apart from the next plot's (the legend sits
        outside the plot, never over a curve). Short of room, the markers' key goes
        first, then the title shortens; the legend is cut last."""
        room = max(width - 1, 1)
        for short, key in ((False, True), (True, True), (False, False), (True, False)):
            t = self._header(short, key and self.marker_key)
            if t.cell_len <= room:
                return t
        t.truncate(room, overflow="ellipsis")
        return t

    def _header(self, short: bool, key: bool) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis", end="")
        t.append(self.title(short), "bold")
        for glyph, name, color in self.legend():
            t.append("  ")
            t.append(glyph, _rich_color(color))
            t.append(f" {name}")
        if key and self.marker_categories:
            t.append("  │", "dim")
            for c in self.marker_categories:
                t.append(" ")
                t.append(c.glyph, c.color)
                t.append(f" {c.name}", "dim")
        return t

    # -- helpers for subclasses -----------------------------------------------------
    def window_rows(self) -> tuple[int, int]:
        n = self.view.length
        return (0 if self.show_all else max(0, n - self.window)), n

    def pieces(self, start: int, stop: int) -> list[tuple[int, int, int, bool]]:
        """(start, stop, buckets, abandoned) of each branch in the window (more than one
        after a checkpoint restore went back in steps); the rows a restore left behind are
        a piece of their own, drawn dimmed. Columns are shared by row count."""
        parts = decimate.segments(start, stop, self.view.breaks)
        total = max(stop - start, 1)
        return [
            (a, b, max(2, self.buckets * (b - a) // total), left)
            for a, b, left in decimate.abandoned(self.view.step, parts)
        ]

    def window_label(self) -> str:
        return "all steps" if self.show_all else f"last {self.window} steps"

    def step_axis(self, plt: Any, x_lo: float, x_hi: float) -> None:
        """Whole-step ticks (1.2k, 3M) instead of plotext's 1234.5."""
        if x_hi <= x_lo:
            return
        plt.xlim(x_lo, x_hi)
        n = max(2, min(6, self.size.width // 18))
        ticks = [x_lo + (x_hi - x_lo) * i / (n - 1) for i in range(n)]
        plt.xticks(ticks, [fmt.count(round(t)) for t in ticks])
