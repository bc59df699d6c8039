"""The frame around a history plot's data (axes, tick marks, labels), built by plotext and
kept while it would be built the same.

A frame is the same whenever the plot's size, the theme, the tick labels and the cells
the ticks fall on are: a live run's x axis grows a step at a time, yet its ticks stay
at the same columns and their labels change only when they round differently, so most
frames reuse the last one and only the data is drawn again (:mod:`optitui.tui.plot_layer`).
Building a plotext figure (a fresh figure, its matrices, its axes) was a good part of
a frame's cost.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from types import MethodType
from typing import Any

from plotext import _utility as ut
from rich.text import Text

from optitui.tui import plot_layer
from optitui.tui.plot_layer import Canvas, Mark
from optitui.tui.plot_text import canvas_text, figure_text


@dataclass(frozen=True)
class Axes:
    """What a history plot asks plotext for around its data: x and y ranges, and each
    axis's tick positions and labels (no x ticks: plotext's own, from the range)."""

    xlim: tuple[float, float] | None
    ylim: tuple[float, float]
    xticks: tuple[tuple[float, ...], tuple[str, ...]] | None
    yticks: tuple[tuple[float, ...], tuple[str, ...]]

    def apply(self, plt: Any) -> None:
        """Set them on a plotext figure. plotext drops duplicate ticks through a set, which
        leaves them in an order that changes with their values, and where two labels
        collide the order decides which is drawn: here they keep the order given, so a
        frame is the same whatever the values it was built from."""
        if self.xlim is not None:
            plt.xlim(*self.xlim)
        plt.ylim(*self.ylim)
        monitor: Any = getattr(plt, "monitor", None)
        if self.xticks is not None:
            plt.xticks(list(self.xticks[0]), list(self.xticks[1]))
            if hasattr(monitor, "xticks") and hasattr(monitor, "xlabels"):
                monitor.xticks[0], monitor.xlabels[0] = _ticks(self.xticks)
        plt.yticks(list(self.yticks[0]), list(self.yticks[1]))
        if hasattr(monitor, "yticks") and hasattr(monitor, "ylabels"):
            monitor.yticks[0], monitor.ylabels[0] = _ticks(self.yticks)


def _ticks(ticks: tuple[tuple[float, ...], tuple[str, ...]]) -> tuple[list[float], list[str]]:
    """Ticks without duplicate pairs, in the order given."""
    kept = list(dict.fromkeys(zip(ticks[0], map(str, ticks[1]), strict=False)))
    return [t for t, _ in kept], [label for _, label in kept]


def _lim(lim: tuple[float, float]) -> list[float]:
    lo, hi = float(lim[0]), float(lim[1])
    return [min(lo, hi), max(lo, hi)]


def _set_matrices(matrix: Any) -> None:
    """plotext's ``matrix_class.set_matrices`` (blank cells; the canvas's background
    inside it, the axes' outside) a row at a time instead of a call per cell."""
    rows, cols = matrix.rows, matrix.cols
    in_cols, in_rows = matrix.Cols_canvas, matrix.Rows_canvas
    axes, canvas = matrix.axes_color, matrix.canvas_color
    inside = [canvas if c in in_cols else axes for c in range(cols)]
    matrix.marker = [[ut.space] * cols for _ in range(rows)]
    matrix.fullground = [[ut.no_color] * cols for _ in range(rows)]
    matrix.background = [inside[:] if r in in_rows else [axes] * cols for r in range(rows)]
    matrix.style = [[ut.no_color] * cols for _ in range(rows)]


def _quick_matrices(matrix: Any) -> None:
    """Have this matrix set its cells with :func:`_set_matrices` (same cells)."""
    if all(hasattr(matrix, a) for a in ("set_matrices", "Cols_canvas", "canvas_color")):
        matrix.set_matrices = MethodType(_set_matrices, matrix)


def clear_figure(plt: Any) -> None:
    """``plt.clear_figure()`` without its deep copy. A fresh plotext figure gives its
    placeholder for subplots a deep copy of its own, just made, monitor (a third of the
    cost of clearing); a new monitor is the same, and this figure has no subplots."""
    monitor_class: Any = type(getattr(plt, "monitor", None))
    own = monitor_class.__dict__.get("copy")
    if own is None:
        plt.clear_figure()
        return
    monitor_class.copy = _fresh
    try:
        plt.clear_figure()
    finally:
        monitor_class.copy = own


def _fresh(monitor: Any) -> Any:
    return type(monitor)()


class FrameCache:
    """The last frame a plot drew, and the canvas size each layout of the frame has."""

    def __init__(self) -> None:
        self._canvas: dict[Hashable, tuple[int, int]] = {}  # layout -> canvas (cols, rows)
        self._key: Hashable | None = None
        self._frame: Canvas | None = None
        self.built = 0  # frames plotext built (the rest were reused)

    def forget(self) -> None:
        """Build the next frame afresh."""
        self._key = self._frame = None

    def _layout(self, size: tuple[int, int], theme: str, axes: Axes) -> Hashable:
        """What the canvas's size depends on: the figure's, and the room its labels take."""
        xlabels = _ticks(axes.xticks)[1] if axes.xticks is not None else None
        ylabels = _ticks(axes.yticks)[1]
        return size, theme, max(map(len, ylabels), default=0), bool(xlabels)

    def _key_of(self, size: tuple[int, int], theme: str, axes: Axes) -> Hashable | None:
        """Everything the frame is built from, or None when plotext chooses some of it."""
        if axes.xticks is None or axes.xlim is None:
            return None
        layout = self._layout(size, theme, axes)
        canvas = self._canvas.get(layout)
        if canvas is None:
            return None
        xt, xl = _ticks(axes.xticks)
        yt, yl = _ticks(axes.yticks)
        xcells = ut.get_matrix_data(xt, _lim(axes.xlim), canvas[0])
        ycells = ut.get_matrix_data(yt, _lim(axes.ylim), canvas[1])
        return layout, tuple(xl), tuple(xcells), tuple(yl), tuple(ycells)

    def text(
        self,
        size: tuple[int, int],
        theme: str,
        axes: Axes,
        marks: Sequence[Mark],
        figure: Callable[[], Any],
    ) -> Text:
        """The figure with ``marks`` drawn on it; ``figure()`` gives a fresh plotext figure
        of the size and theme with no axes set, for when the frame must be built."""
        key = self._key_of(size, theme, axes)
        reuse = key is not None and key == self._key and plot_layer.drawable(marks)
        if reuse and self._frame is not None:
            canvas = self._frame.copy()
            canvas.xlim, canvas.ylim = _lim(axes.xlim or (0.0, 0.0)), _lim(axes.ylim)
        else:
            plt = figure()
            axes.apply(plt)
            if not (marks and plot_layer.supported(plt, marks)):
                self._key = self._frame = None
                return figure_text(plt, marks)
            plot_layer.reserve_axes(plt, marks)
            _quick_matrices(plt.monitor.matrix)
            plt._set_sizes()
            plt._build_matrix()
            canvas = Canvas.of(plt)
            self.built += 1
            self._canvas[self._layout(size, theme, axes)] = (len(canvas.cols), len(canvas.rows))
            self._key = self._key_of(size, theme, axes)
            self._frame = canvas.copy() if self._key is not None else None
        plot_layer.draw(canvas, marks)
        return canvas_text(canvas)
