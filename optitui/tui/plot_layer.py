"""A history plot's data drawn straight into plotext's character matrix.

plotext draws a braille line dot by dot: every pair of points becomes a list of
dots, every dot a few Python calls, and the dots are grouped into cells in a dict
of nested lists. A raw loss band (a min and a max per column, drawn tall) is tens
of thousands of dots a frame, and that was most of a frame's cost. Here a line
segment becomes vertical runs of dots (a steep segment has one dot per pixel row:
its runs are found from where its column changes), and each run is ORed into
braille cells a cell at a time. plotext still builds the frame (axes, ticks,
labels); the data is drawn onto its matrix afterwards, with the same arithmetic
as plotext's, so every cell comes out as plotext would draw it (a test compares
the two, cell by cell).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from plotext import _utility as ut

#: plotext's name for a braille line's marker
BRAILLE = "braille"
#: braille dots of a cell per sub-column (0, 1) and dot row (0 the bottom), as plotext
#: orders a cell's code: the top row first, the left dot before the right
_BIT = [[1 << (7 - (2 * (3 - r) + c)) for r in range(4)] for c in range(2)]
#: the dots of sub-column c from dot row lo to hi (inclusive)
_SPAN = [
    [[sum(_BIT[c][r] for r in range(lo, hi + 1)) for hi in range(4)] for lo in range(4)]
    for c in range(2)
]
#: the braille character of each set of dots
_GLYPH = [
    ut.get_hd_marker(tuple((code >> (7 - i)) & 1 for i in range(8))) if code else " "
    for code in range(256)
]


@dataclass(frozen=True)
class Mark:
    """One series for the data layer: a line through its points (``line``), or
    ``glyph`` at each point, in ``color`` (anything plotext takes). Finite values only."""

    xs: Sequence[float]
    ys: Sequence[float]
    color: Any
    glyph: str = BRAILLE
    line: bool = True


def drawable(marks: Sequence[Mark]) -> bool:
    """Whether the layer draws these marks (lines in braille, points in one glyph each)."""
    return all(
        m.glyph == BRAILLE if m.line else _marker(m.glyph) not in ut.hd_symbols for m in marks
    )


def supported(plt: Any, marks: Sequence[Mark]) -> bool:
    """Whether the layer can draw ``marks`` into this plotext's internals."""
    monitor = getattr(plt, "monitor", None)
    return (
        drawable(marks)
        and getattr(plt, "_no_plots", False)
        and hasattr(monitor, "matrix")
        and hasattr(monitor, "xlim")
        and hasattr(monitor, "ylim")
        and hasattr(ut, "get_matrix_data")
    )


@dataclass
class Canvas:
    """A built plotext figure: its matrices (row 0 at the bottom), where its canvas lies
    and the x and y ranges it maps onto the canvas."""

    marker: list[list[str]]
    fullground: list[list[Any]]
    style: list[list[Any]]
    background: list[list[Any]]
    cols: range
    rows: range
    xlim: list[float]
    ylim: list[float]

    @classmethod
    def of(cls, plt: Any) -> Canvas:
        """The matrix plotext has just built (shared, not copied)."""
        monitor = plt.monitor
        m = monitor.matrix
        return cls(
            m.marker,
            m.fullground,
            m.style,
            m.background,
            m.Cols_canvas,
            m.Rows_canvas,
            list(monitor.xlim[0]),
            list(monitor.ylim[0]),
        )

    def copy(self) -> Canvas:
        return Canvas(
            [r[:] for r in self.marker],
            [r[:] for r in self.fullground],
            [r[:] for r in self.style],
            [r[:] for r in self.background],
            self.cols,
            self.rows,
            list(self.xlim),
            list(self.ylim),
        )


def plot_marks(plt: Any, marks: Sequence[Mark]) -> None:
    """The marks as plotext's own signals (when the layer cannot draw them)."""
    for m in marks:
        if m.line:
            plt.plot(list(m.xs), list(m.ys), marker=m.glyph, color=m.color)
        else:
            plt.scatter(list(m.xs), list(m.ys), marker=m.glyph, color=m.color)


def reserve_axes(plt: Any, marks: Sequence[Mark]) -> None:
    """One invisible signal, so that plotext draws the axes and ticks it draws for a
    figure with data (a figure without signals drops them); it lies at the first x
    (the axis range is the same) with no y, so no cell shows it."""
    first = next((m for m in marks if len(m.xs)), None)
    if first is not None:
        plt.scatter([first.xs[0]], [math.nan], marker=" ")


def draw(canvas: Canvas, marks: Sequence[Mark]) -> None:
    """Draw ``marks`` in order (a later one over an earlier one) onto ``canvas``."""
    cols, rows = canvas.cols, canvas.rows
    width, height = len(cols), len(rows)
    if width <= 0 or height <= 0:
        return
    xlim, ylim = canvas.xlim, canvas.ylim
    markers, fgs, styles = canvas.marker, canvas.fullground, canvas.style
    c0, r0 = cols.start, rows.start
    for m in marks:
        if not len(m.xs):
            continue
        if m.line:
            px = ut.get_matrix_data(list(m.xs), xlim, 2 * width)
            py = ut.get_matrix_data(list(m.ys), ylim, 4 * height)
            cells = braille_cells(px, py)
            put = [(cx, cy, _GLYPH[code]) for (cx, cy), code in cells.items()]
        else:
            glyph = _marker(m.glyph)
            cx_ = ut.get_matrix_data(list(m.xs), xlim, width)
            cy_ = ut.get_matrix_data(list(m.ys), ylim, height)
            put = [(cx, cy, glyph) for cx, cy in zip(cx_, cy_, strict=True)]
        for cx, cy, glyph in put:
            if 0 <= cx < width and 0 <= cy < height:
                r, c = r0 + cy, c0 + cx
                markers[r][c] = glyph
                fgs[r][c] = m.color
                styles[r][c] = ut.no_color


def _marker(glyph: str) -> str:
    """A glyph as plotext keeps it: a marker's name becomes its character, else the first."""
    glyph = ut.marker_codes.get(glyph, glyph)
    return glyph if glyph in ut.hd_symbols else glyph[0]


def braille_cells(px: Sequence[int], py: Sequence[int]) -> dict[tuple[int, int], int]:
    """The braille cells (column, row) of a line through pixels (px, py), each with its
    dots as a bit set (see ``_BIT``): the dots plotext's ``get_lines`` puts on it."""
    cells: dict[tuple[int, int], int] = {}
    n = len(px)
    for i in range(n - 1):
        for x, ya, yb in _segment_runs(px[i], py[i], px[i + 1], py[i + 1]):
            _fill(cells, x, ya, yb)
    if n:
        _fill(cells, px[-1], py[-1], py[-1])
    return cells


def _fill(cells: dict[tuple[int, int], int], x: int, ya: int, yb: int) -> None:
    """OR the dots of pixel column x, rows ya..yb (either order), into their cells."""
    if ya > yb:
        ya, yb = yb, ya
    cx, sub = x // 2, x % 2
    span = _SPAN[sub]
    top = yb // 4
    for cy in range(ya // 4, top + 1):
        lo = ya - 4 * cy if cy * 4 <= ya else 0
        hi = yb - 4 * cy if cy == top else 3
        key = (cx, cy)
        cells[key] = cells.get(key, 0) | span[lo][hi]


def _segment_runs(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int, int]]:
    """The dots plotext's ``get_line`` puts from (x0, y0) towards (x1, y1), the end left
    out, as vertical runs (x, first y, last y)."""
    dx, dy = x1 - x0, y1 - y0
    steps = max(abs(dx), abs(dy))  # plotext's a - 1: dots k = 0 .. steps - 1
    if steps == 0:
        return []
    sx, sy = dx / steps, dy / steps  # plotext's linspace slopes
    if abs(dy) < abs(dx) or min(x0, x1) < 0 or min(y0, y1) < 0:
        # shallow (a column a dot), or partly below zero where int() is not floor: dot
        # by dot, as plotext does
        return [(int(x0 + k * sx), int(y0 + k * sy), int(y0 + k * sy)) for k in range(steps)]
    # steep: one dot per row (y0 + k * sy is exact), the column x0 + k * sx rounded down
    # steps in whole pixels: cut where it does (k found in whole numbers, then checked
    # against plotext's own float arithmetic)
    runs: list[tuple[int, int, int]] = []
    ady, adx = abs(dy), abs(dx)
    up = 1 if dy > 0 else -1
    k, x = 0, x0
    while k < steps:
        j = abs(x - x0) + 1  # the next column, counted from x0
        if dx == 0:
            nxt = steps
        elif dx > 0:  # x0 + k * sx reaches x0 + j from k >= j * ady / adx
            nxt = -(-j * ady // adx)
        else:  # x0 + k * sx < x0 - j + 1 from k > (j - 1) * ady / adx
            nxt = (j - 1) * ady // adx + 1
        nxt = min(max(nxt, k + 1), steps)
        while nxt > k + 1 and int(x0 + (nxt - 1) * sx) != x:
            nxt -= 1
        while nxt < steps and int(x0 + nxt * sx) == x:
            nxt += 1
        runs.append((x, y0 + k * up, y0 + (nxt - 1) * up))
        k = nxt
        if k < steps:
            x = int(x0 + k * sx)
    return runs
