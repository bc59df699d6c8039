"""A plot of run history, redrawn on the app's clock from a decimated view."""

from __future__ import annotations

import time
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import RenderResult
from textual.content import Content
from textual.geometry import Size
from textual.visual import Visual
from textual_plotext import PlotextPlot

from optitui.tui import decimate, fmt, y_range
from optitui.tui.axis import Axis, axis_for
from optitui.tui.chart_text import Frame
from optitui.tui.decimate import Points
from optitui.tui.history import HistoryView, empty_view
from optitui.tui.markers import CATEGORIES, Category, Marker, in_view
from optitui.tui.overlay import Overlay, extent, has_times, overlay_points, start_time, step_x
from optitui.tui.plot_frame import Axes, FrameCache, clear_figure
from optitui.tui.plot_layer import Mark
from optitui.tui.plot_text import DIMMABLE, dimmed, figure_text
from optitui.tui.rich_content import to_content
from optitui.tui.span import Span

#: columns taken by the y tick labels and the frame; the rest hold data
AXIS_COLUMNS = 10
#: the line above the figure: title, legend, markers' key
HEADER_ROWS = 1
SERIES_COLORS = ("cyan", "orange", "green", "magenta", "blue", "red", "yellow", "white")
#: drawn at the top (bottom) edge where a series went beyond the y axis
CLIPPED_ABOVE = "↑"
CLIPPED_BELOW = "↓"
CLIP_COLOR = "bold"
#: plotext's names that rich spells otherwise
RICH_NAMES = {"orange": "dark_orange", "gray": "grey50"}


@dataclass(frozen=True)
class Series:
    """One plotted series: a line (braille) or points (``scatter``, one glyph each)."""

    points: Points
    color: Any
    marker: str = "braille"
    scatter: bool = False
    role: str = ""  # what the series is, for a plot that ranges its axis by it


def rich_color(color: Any) -> str:
    """The rich style of a series colour, dimmed stand-ins and RGB triples included."""
    if isinstance(color, tuple) and color[:2] == dimmed(DIMMABLE[0])[:2]:
        return f"dim {RICH_NAMES.get(DIMMABLE[color[2] - 2], DIMMABLE[color[2] - 2])}"
    if isinstance(color, tuple):
        return "rgb({},{},{})".format(*color)
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
        self.span = Span()
        self.log_y: bool | None = False
        self.dirty = True
        self.frame_seconds = 0.0
        self.decimate_seconds = 0.0  # of which: choosing the points (the rest is plotext)
        self.frames = 0
        self.drawn_length = -1  # history length of the last frame drawn
        self._drawn_size: Size | None = None
        self._text: Text | None = None
        self._content = Content()  # the text as Textual draws it
        self._content_of: tuple[Text, Any] | None = None  # the text and palette it is of
        self._legend: list[tuple[str, str, Any]] = []
        self._marks: list[Mark] = []  # the frame's data, drawn in order (see plot_layer)
        self.frame_cache = FrameCache()  # the axes and labels, kept while they stay the same
        self.marker_categories: list[Category] = []
        self.marker_key = True  # name the markers' glyphs on the title line
        self.round_bottom = False  # the y axis starts at a tick (see Axis.rounded_down)
        self.overlays: tuple[Overlay, ...] = ()  # other runs drawn over this one
        self.x_time = False  # x axis by wall time since the first step, not by step
        self.drawn_overlays: tuple[int, ...] = ()  # each overlay's length in the last frame
        self.drawn_x: tuple[float, float] | None = None  # the x axis's range in the last frame
        self.label_cells = 0  # the y labels take at least this many cells (see line_up)
        self._lined: tuple[Text, Frame | None] | None = None  # line_up of the frame's text

    # -- inputs --------------------------------------------------------------------
    def show(self, view: HistoryView) -> None:
        self.view = view
        self.dirty = True

    def set_markers(self, markers: list[Marker]) -> None:
        self.markers = markers
        self.dirty = True

    def set_span(self, span: Span) -> None:
        """Show the rows of ``span`` (shared by both plots: the dashboard owns it)."""
        if span != self.span:
            self.span = span
            self.dirty = True

    def set_log_y(self, log_y: bool | None) -> None:
        """A log (True) or linear (False) y axis; None: the plot's own choice."""
        if log_y != self.log_y:
            self.log_y = log_y
            self.dirty = True

    def set_overlays(self, overlays: tuple[Overlay, ...]) -> None:
        """Other runs to draw over this one (each in its own colour, named in the legend)."""
        if overlays != self.overlays:
            self.overlays = overlays
            self.dirty = True

    def set_label_cells(self, cells: int) -> None:
        """Right-align the y labels in at least ``cells`` cells: a chart drawn under this
        plot with as many puts its y axis line in the same column."""
        if cells != self.label_cells:
            self.label_cells = cells
            self.dirty = True

    def set_x_time(self, by_time: bool) -> None:
        """Place rows by wall time since each run's first step (else by step)."""
        if by_time != self.x_time:
            self.x_time = by_time
            self.dirty = True

    def line_up(self) -> Frame | None:
        """This plot's layout in its last frame, for a chart drawn under it to take (see
        :class:`~optitui.tui.chart_text.Frame`): None before a frame with data, and by
        time (the chart is by step)."""
        text = self._text
        if text is None or self.drawn_x is None or self.by_time() or not self.size.area:
            return None
        if self._lined is None or self._lined[0] is not text:  # read once a frame
            lines = text.plain.split("\n")
            top = lines[HEADER_ROWS] if len(lines) > HEADER_ROWS + 2 else ""
            left, right = top.find("┌"), top.find("┐")
            frame = Frame(left, right - left - 1, self.drawn_x, lines[-1])
            self._lined = (text, frame if left >= 0 and right > left + 1 else None)
        return self._lined[1]

    def shows(self, length: int, overlays: tuple[int, ...] | None = None) -> bool:
        """True once the plot has drawn a history of ``length`` rows (and overlays of
        these lengths, when given), or is hidden (a narrow terminal shows one plot at a
        time): nothing more is coming."""
        if not self.size.area:
            return True
        drawn = overlays is None or self.drawn_overlays == overlays
        return self.drawn_length == length and not self.dirty and drawn

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
        # the first line is the plot's own: title, legend and the markers' key
        rows = max(size.height - HEADER_ROWS, 1)
        self._legend = []
        self._marks = []
        series, x_range = self.draw(self.plt)
        if self.overlays:
            series, x_range = self._with_overlays(series, x_range)
        axes = self._finish(series, x_range, rows)
        self.drawn_x = x_range
        self.decimate_seconds = time.perf_counter() - t0
        theme = self._get_plotext_theme_name(self.app.theme)

        def figure() -> Any:
            plt = self.plt
            clear_figure(plt)
            plt.plotsize(size.width, rows)
            plt._set_size(size.width, rows)  # see PlotextPlot.render: both are needed
            plt.theme(theme)
            return plt

        # plotext's build is not repeatable (a log axis would be applied twice), so
        # one figure is built once and its text kept until the next redraw; its frame
        # is kept while the next would be the same (see plot_frame)
        if axes is None:
            figure_ = figure_text(figure())
        else:
            figure_ = self.frame_cache.text((size.width, rows), theme, axes, self._marks, figure)
        self._text = Text(end="")
        self._text.append_text(self.header(size.width))
        self._text.append("\n")
        self._text.append_text(figure_)
        self.dirty = False
        self._drawn_size = size
        self.drawn_length = self.view.length
        self.drawn_overlays = tuple(ov.view.length for ov in self.overlays)
        self.frame_seconds = time.perf_counter() - t0
        self.frames += 1
        return True

    def draw(self, plt: Any) -> tuple[list[Series], tuple[float, float] | None]:
        """This plot's series (and their step range) for a fresh plotext figure ``plt``."""
        raise NotImplementedError

    def title(self, short: bool = False) -> str:
        """What the plot shows; ``short`` when the line is narrow."""
        raise NotImplementedError

    def overlay_lines(
        self, view: HistoryView, x: array[float], start: int, stop: int, buckets: int, log: bool
    ) -> list[Points]:
        """What this plot draws of an overlaid run: rows [start, stop) placed by ``x``."""
        return []

    #: the role an overlaid run's lines have in the y axis's range (see y_limits)
    OVERLAY_ROLE = ""

    # -- other runs ----------------------------------------------------------------
    def by_time(self) -> bool:
        """Whether the x axis is wall time: asked for, and every row has its time."""
        return self.x_time and has_times(self.view)

    def x_column(self) -> array[float]:
        """The column this run's rows are placed by on the x axis."""
        return self.view.time if self.by_time() else self.view.step

    def _with_overlays(
        self, series: list[Series], x_range: tuple[float, float] | None
    ) -> tuple[list[Series], tuple[float, float] | None]:
        """The overlaid runs' lines under this run's own, within its window (with all
        steps in view, the window takes in every run's whole history)."""
        by_time = self.by_time()
        if self.x_time and not by_time and self.view.length:
            return series, x_range  # this run has no wall times: nothing to line up with
        origin = start_time(self.view) if by_time else 0.0
        spans = [x_range] if x_range is not None else []
        if self.span.everything or x_range is None:
            spans += [e for ov in self.overlays if (e := extent(ov, self.x_time, origin))]
        if not spans:
            return series, x_range
        x_range = min(lo for lo, _ in spans), max(hi for _, hi in spans)
        positive = self.log_y is True  # as the plot's own series (an automatic log axis
        # is chosen only when every value is > 0)
        below: list[Series] = []
        for ov in self.overlays:
            lines = overlay_points(
                ov, self.overlay_lines, x_range, self.buckets, self.x_time, origin, positive
            )
            below += [Series(pts, ov.color, role=self.OVERLAY_ROLE) for pts in lines]
            if lines:  # named when some of it is in view
                self._legend.append(("━", ov.name, ov.color))
        return below + series, x_range

    def render(self) -> RenderResult:
        self._build(force=self._text is None)
        return self._text if self._text is not None else Text("")

    def _render(self) -> Visual:
        """The plot as Textual draws it: its Text converted by :func:`to_content`, each
        style once, and kept while the text and the palette stay."""
        text = self.render()
        if not isinstance(text, Text):
            return super()._render()
        palette = self.app.ansi_theme
        made = self._content_of
        if made is None or made[0] is not text or made[1] is not palette:
            self._content = to_content(text, self.app.console, palette)
            self._content_of = (text, palette)
        return self._content

    def _finish(
        self, series: list[Series], x_range: tuple[float, float] | None, rows: int
    ) -> Axes | None:
        """Put the series on a y axis of their own range (a flat one padded) with a strip
        for the markers along its bottom, and whole-step x ticks: the frame's axes (None
        when there is nothing to draw)."""
        self.marker_categories = []
        limits = self.y_limits(series)
        if limits is None or x_range is None:
            return None
        axis = axis_for(*limits, self.log_scale())
        canvas = max(rows - 3, 2)  # less the frame's two lines and the step labels
        if self.round_bottom:
            axis = axis.rounded_down(canvas)
        row = (axis.hi - axis.lo) / max(canvas - 1, 1)
        strip = axis.lo - row  # the bottom row holds the markers, below every curve
        self._plot_series(series, axis, row)
        x_lo, x_hi = x_range
        shown = self.markers_in_view(x_lo, x_hi)
        by_category: dict[Category, list[float]] = {}
        for m in shown:
            x = step_x(self.view, m.step, self.by_time())
            if x is not None:
                by_category.setdefault(m.category, []).append(x)
        for category, xs in by_category.items():
            self._marks.append(Mark(xs, [strip] * len(xs), category.rgb, category.glyph, False))
        self.marker_categories = [c for c in CATEGORIES if c in by_category]
        positions, labels = axis.ticks(canvas)
        labels = [text.rjust(self.label_cells) for text in labels]
        x_axis = self.step_axis(x_lo, x_hi)
        return Axes(
            x_axis[0] if x_axis else None,
            (strip - row * 0.25, axis.hi + row * 0.25),
            x_axis[1] if x_axis else None,
            (tuple(positions), tuple(labels)),
        )

    def y_limits(self, series: list[Series]) -> tuple[float, float] | None:
        """The values the y axis spans (every point; the loss plot leaves outliers out).
        Called before :meth:`log_scale` in each frame."""
        ys = [y for s in series for y in s.points.ys]
        return (min(ys), max(ys)) if ys else None

    def _plot_series(self, series: list[Series], axis: Axis, row: float) -> None:
        """Each series on the axis; points beyond it are drawn at the edge they passed,
        marked there with an arrow when they passed it by more than half a row (``row``:
        the height of one, in plot coordinates), and the arrow is named in the legend."""
        clips: dict[str, list[tuple[float, Any]]] = {CLIPPED_ABOVE: [], CLIPPED_BELOW: []}
        for s in series:
            ys_plot = [axis.to_plot(y) for y in s.points.ys]
            held = y_range.clip(s.points.xs, ys_plot, axis.lo, axis.hi, row / 2)
            self._marks.append(Mark(s.points.xs, held.ys, s.color, s.marker, not s.scatter))
            clips[CLIPPED_ABOVE] += [(x, s.color) for x in held.above]
            clips[CLIPPED_BELOW] += [(x, s.color) for x in held.below]
        for glyph, at in clips.items():
            y = axis.hi if glyph == CLIPPED_ABOVE else axis.lo
            for color in dict.fromkeys(c for _, c in at):  # a scatter per colour, in order
                xs = [x for x, c in at if c == color]
                self._marks.append(Mark(xs, [y] * len(xs), color, glyph, False))
        clipped = [g for g, at in clips.items() if at]
        if clipped:
            self._legend.append(("".join(clipped), "clipped", CLIP_COLOR))

    def log_scale(self) -> bool:
        """Whether the y axis is logarithmic in the frame being drawn."""
        return bool(self.log_y)

    def markers_in_view(self, x_lo: float, x_hi: float) -> list[Marker]:
        """At most one marker every few columns: frequent events must not fill the strip."""
        if self.by_time():  # markers are by step: the steps at the window's ends
            lo, hi = self._step_at(x_lo), self._step_at(x_hi)
            return in_view(self.markers, lo, hi, max(1, self.buckets // 2))
        return in_view(self.markers, x_lo, x_hi, max(1, self.buckets // 2))

    def _step_at(self, t: float) -> float:
        """The step of the newest row recorded at or before wall time ``t``."""
        time, n = self.view.time, self.view.length
        i = min(max(bisect_right(time, t, 0, n) - 1, 0), n - 1)
        return self.view.step[i]

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
            t.append(glyph, rich_color(color))
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
        return self.span.rows(self.view.length)

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

    def window_label(self, short: bool = False) -> str:
        """The steps in view: ``all steps``, ``last 2000 steps``, or the window panned
        to (``steps 4.1k-6.2k``); ``short`` drops the words a narrow title can miss."""
        span = self.span
        if span.everything:
            return "" if short else "all steps"
        if span.following:
            return f"last {span.size}" if short else f"last {span.size} steps"
        start, stop = self.window_rows()
        steps = self.view.step
        if stop <= start or stop > len(steps):
            return "no steps"
        lo, hi = fmt.count(round(steps[start])), fmt.count(round(steps[stop - 1]))
        return f"{lo}-{hi}" if short else f"steps {lo}-{hi}"

    def x_label(self) -> str:
        """What the x axis counts, for the title: '' for steps, the usual."""
        return " · by time" if self.x_time else ""

    def step_axis(
        self, x_lo: float, x_hi: float
    ) -> tuple[tuple[float, float], tuple[tuple[float, ...], tuple[str, ...]]] | None:
        """The x range and its ticks: whole steps (1.2k, 3M) instead of plotext's 1234.5;
        by time, the time since the run's first step (4m12s). None for a single step
        (plotext's own)."""
        if x_hi <= x_lo:
            return None
        n = max(2, min(6, self.size.width // 18))
        ticks = tuple(x_lo + (x_hi - x_lo) * i / (n - 1) for i in range(n))
        if self.x_time and (self.by_time() or not self.view.length):
            t0 = start_time(self.view)
            return (x_lo, x_hi), (ticks, tuple(fmt.duration(t - t0) for t in ticks))
        if x_hi - x_lo < self.size.width:
            # few steps, each a column or more wide: a tick between two steps would be
            # named after one it is not on (2.5 as "2", beside a tick on 2): each tick
            # goes on the step it names, once
            ticks = tuple(sorted({float(round(t)) for t in ticks}))
        return (x_lo, x_hi), (ticks, tuple(fmt.count(round(t)) for t in ticks))
