"""A plot of run history, redrawn on the app's clock from a decimated view."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import RenderResult
from textual.geometry import Size
from textual_plotext import PlotextPlot

from optitui.tui import decimate, fmt
from optitui.tui.history import HistoryView, empty_view
from optitui.tui.markers import Marker
from optitui.tui.plot_text import dimmed, figure_text

#: columns taken by the y tick labels and the frame; the rest hold data
AXIS_COLUMNS = 10
SERIES_COLORS = ("cyan", "orange", "green", "magenta", "blue", "red", "yellow", "white")


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
        self.draw(plt)
        self.decimate_seconds = time.perf_counter() - t0
        plt.plotsize(size.width, size.height)
        plt._set_size(size.width, size.height)  # see PlotextPlot.render: both are needed
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        # plotext's build is not repeatable (a log axis would be applied twice), so
        # one figure is built once and its text kept until the next redraw
        self._text = figure_text(plt)
        self.dirty = False
        self._drawn_size = size
        self.drawn_length = self.view.length
        self.frame_seconds = time.perf_counter() - t0
        self.frames += 1
        return True

    def draw(self, plt: Any) -> None:
        """Put this plot's series on ``plt`` (a fresh plotext figure)."""
        raise NotImplementedError

    def render(self) -> RenderResult:
        self._build(force=self._text is None)
        return self._text if self._text is not None else Text("")

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

    def draw_markers(self, plt: Any, x_lo: float, x_hi: float, y_top: float | None) -> None:
        """Lines where something changed, ticks at ``y_top`` for routine events."""
        from optitui.tui.markers import in_view

        # at most one marker every few columns: frequent events must not hide the curve
        shown = in_view(self.markers, x_lo, x_hi, max(1, self.buckets // 3))
        ticks: dict[str, list[float]] = {}
        for m in shown:
            if m.tick:
                ticks.setdefault(m.color, []).append(m.step)
            else:
                plt.vline(m.step, m.color)
        if y_top is not None:
            for color, xs in ticks.items():
                plt.scatter(xs, [y_top] * len(xs), marker="▾", color=color)
