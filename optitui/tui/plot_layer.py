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
from math import ceil, floor
from typing import Any

from plotext import _utility as ut

#: plotext's name for a braille line's marker
BRAILLE = "braille"
#: plotext's rounding to 8 decimals: up by 10**8, and back
_UP = 10**8
_DOWN = 10 ** (-8)
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
            px = to_cells(m.xs, xlim, 2 * width)
            py = to_cells(m.ys, ylim, 4 * height)
            cells = braille_cells(px, py)
            put = [(cx, cy, _GLYPH[code]) for (cx, cy), code in cells.items()]
        else:
            glyph = _marker(m.glyph)
            cx_ = to_cells(m.xs, xlim, width)
            cy_ = to_cells(m.ys, ylim, height)
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


def to_cells(data: Sequence[float], lim: Sequence[float], bins: int) -> list[int]:
    """plotext's ``get_matrix_data`` for finite values: each value's cell (or dot) among
    ``bins`` over ``lim``, rounded as plotext rounds (its own round to 8 decimals, then
    down), without a call per value."""
    lo, span, k = lim[0], lim[1] - lim[0], bins - 1
    out = []
    for el in data:
        n = (0.5 + k * (el - lo) / span) * _UP
        f = floor(n)
        out.append(floor((f if n - f < 0.5 else ceil(n)) * _DOWN))
    return out


def braille_cells(px: Sequence[int], py: Sequence[int]) -> dict[tuple[int, int], int]:
    """The braille cells (column, row) of a line through pixels (px, py), each with its
    dots as a bit set (see ``_BIT``): the dots plotext's ``get_lines`` puts on it."""
    cells: dict[tuple[int, int], int] = {}
    n = len(px)
    for i in range(n - 1):
        x0, y0, x1, y1 = px[i], py[i], px[i + 1], py[i + 1]
        dx, dy = x1 - x0, y1 - y0
        adx, ady = (dx if dx >= 0 else -dx), (dy if dy >= 0 else -dy)
        if x0 < 0 or x1 < 0 or y0 < 0 or y1 < 0:  # int() is not floor below zero
            steps = adx if adx > ady else ady
            for k in range(steps):  # dot by dot, with plotext's linspace slopes
                y = int(y0 + k * (dy / steps))
                _vfill(cells, int(x0 + k * (dx / steps)), y, y)
        elif ady >= adx:  # steep: one dot a row, in vertical runs
            if ady:
                up = 1 if dy > 0 else -1
                for x, ka, kb in _runs(x0, dx, ady):
                    _vfill(cells, x, y0 + ka * up, y0 + kb * up)
        else:  # shallow: one dot a column, in horizontal runs
            right = 1 if dx > 0 else -1
            for y, ka, kb in _runs(y0, dy, adx):
                _hfill(cells, y, x0 + ka * right, x0 + kb * right)
    if n:
        _vfill(cells, px[-1], py[-1], py[-1])
    return cells


def _runs(v0: int, dv: int, steps: int) -> list[tuple[int, int, int]]:
    """plotext's ``int(v0 + k * dv / steps)`` for k = 0 .. steps - 1 (|dv| <= steps, the
    values not negative) as runs (value, first k, last k). It moves one at a time: each
    cut is found in whole numbers, then checked against the same float arithmetic."""
    if dv == 0:
        return [(v0, 0, steps - 1)]
    s = dv / steps
    adv = dv if dv > 0 else -dv
    runs: list[tuple[int, int, int]] = []
    k, v = 0, v0
    for j in range(1, adv + 1):  # the first k at the j-th value from v0
        nxt = -(-j * steps // adv) if dv > 0 else (j - 1) * steps // adv + 1
        if nxt <= k:
            nxt = k + 1
        while nxt > k + 1 and int(v0 + (nxt - 1) * s) != v:
            nxt -= 1
        while nxt < steps and int(v0 + nxt * s) == v:
            nxt += 1
        if nxt >= steps:
            break
        runs.append((v, k, nxt - 1))
        k, v = nxt, int(v0 + nxt * s)
    runs.append((v, k, steps - 1))
    return runs


def _vfill(cells: dict[tuple[int, int], int], x: int, ya: int, yb: int) -> None:
    """OR the dots of pixel column x, rows ya..yb (either order), into their cells."""
    if ya > yb:
        ya, yb = yb, ya
    cx = x // 2
    span = _SPAN[x % 2]
    first, top = ya // 4, yb // 4
    if first == top:
        key = (cx, first)
        cells[key] = cells.get(key, 0) | span[ya - 4 * first][yb - 4 * top]
        return
    key = (cx, first)
    cells[key] = cells.get(key, 0) | span[ya - 4 * first][3]
    full = span[0][3]
    for cy in range(first + 1, top):
        key = (cx, cy)
        cells[key] = cells.get(key, 0) | full
    key = (cx, top)
    cells[key] = cells.get(key, 0) | span[0][yb - 4 * top]


def _hfill(cells: dict[tuple[int, int], int], y: int, xa: int, xb: int) -> None:
    """OR the dots of pixel row y, columns xa..xb (either order), into their cells."""
    if xa > xb:
        xa, xb = xb, xa
    cy, r = y // 4, y % 4
    left, right = _BIT[0][r], _BIT[1][r]
    for cx in range(xa // 2, xb // 2 + 1):
        bits = (left if 2 * cx >= xa else 0) | (right if 2 * cx + 1 <= xb else 0)
        key = (cx, cy)
        cells[key] = cells.get(key, 0) | bits
