"""A small line chart drawn straight to rich Text in braille, for the metrics screen.

plotext costs several milliseconds a figure whatever it draws, and a screen of nine
charts would cost more than a frame may. A chart here is a braille canvas (2 x 4 dots a
cell) filled from the decimated points (:mod:`optitui.tui.decimate`, a few per dot
column), a y axis with round labels (:mod:`optitui.tui.axis`) and a bottom row with the
markers' glyphs and the step range. Its cost grows with its cells, not with history.

Lines, from the top: the title; the canvas, its y labels on the left; the strip (markers
over the step labels).

A chart drawn under another plot (the metric pinned under the loss plot) can take that
plot's :class:`Frame`: its y axis line in the same column, as many canvas cells, the
same steps at its edges and its step labels, so a step is in the same column in both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from rich.text import Text

from optitui.tui import fmt, y_range
from optitui.tui.axis import Axis, axis_for, label
from optitui.tui.markers import Category

#: cells of the y labels, and the axis line after them
LABEL_CELLS = 7
LEFT = LABEL_CELLS + 1
CLIPPED_ABOVE = "↑"
CLIPPED_BELOW = "↓"
SINGLE = "•"  # a series of one point: a dot would be lost
#: braille dot bits by (row in the cell from the top, column)
_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


@dataclass
class Curve:
    """Decimated points of one series (several per x make a min/max band), in one style."""

    xs: list[float]
    ys: list[float]
    style: str
    newest: bool = False  # this run's own series: its last value stays on the axis


@dataclass(frozen=True)
class Frame:
    """The layout of a plot a chart is drawn under, for the chart to take."""

    label_cells: int  # cells left of the y axis line
    cols: int  # canvas cells between the axis line and the plot's right edge
    x: tuple[float, float]  # the steps at the canvas's left and right edges
    steps: str  # the plot's step labels line, from its first cell


@dataclass
class Chart:
    """What one chart shows."""

    title: Text
    curves: list[Curve]
    x_lo: float
    x_hi: float
    markers: list[tuple[float, Category]] = field(default_factory=list)
    log_y: bool | None = None  # None: log when the values span more than two decades
    x_ticks: int = 2  # step labels along the bottom (2: the window's ends)
    say_scale: bool = False  # the title names a log axis
    empty: str = "no values in view"  # said when no point is in view
    frame: Frame | None = None  # another plot's layout to line up with


@dataclass
class Drawn:
    """A chart's lines and what was chosen drawing it."""

    lines: list[Text]
    log: bool = False
    clipped: bool = False
    y: tuple[float, float] | None = None  # the axis's range, in the values' units
    x: tuple[float, float] = (0.0, 0.0)  # the steps at its left and right edges


def y_axis(chart: Chart) -> tuple[Axis, bool] | None:
    """The chart's axis (robust range, automatic log scale) and whether it is log."""
    every = [y for c in chart.curves for y in c.ys if math.isfinite(y)]
    if not every:
        return None
    newest: list[float] = []
    for c in chart.curves:
        if c.newest and c.xs:
            last = c.xs[-1]
            newest += [y for x, y in zip(c.xs, c.ys, strict=True) if x == last and math.isfinite(y)]
    lo_all, hi_all = min(every), max(every)
    log = chart.log_y
    if log is None:
        log = y_range.auto_log(lo_all, hi_all, False)
    if log:
        every = [math.log10(y) for y in every if y > 0.0]
        newest = [math.log10(y) for y in newest if y > 0.0]
        if not every:
            return None
    limits = y_range.metric(every, newest)
    assert limits is not None
    lo, hi = limits
    if log:
        return axis_for(10**lo, 10**hi, True), True
    return axis_for(lo, hi, False), False


def draw(chart: Chart, width: int, height: int) -> Drawn:
    """``height`` lines of ``width`` cells (a chart with a frame: of the frame's width
    at most)."""
    width, height = max(width, LEFT + 4), max(height, 3)
    rows = height - 2
    label_cells, cols = LABEL_CELLS, width - LEFT
    if chart.frame is not None:
        label_cells = chart.frame.label_cells
        cols = max(min(chart.frame.cols, width - label_cells - 1), 4)
    found = y_axis(chart)
    title = chart.title.copy()
    if chart.say_scale and found is not None and found[1]:
        title.append("  log-y", "dim")
    title.truncate(width, overflow="ellipsis", pad=True)
    if found is None:
        finite = any(math.isfinite(y) for c in chart.curves for y in c.ys)
        what = "no values > 0 for a log axis (l)" if finite else chart.empty
        pad = max((width - len(what)) // 2, 0)
        empty = Text(" " * pad, no_wrap=True, end="")
        empty.append(what[: width - pad], "dim")
        empty.pad_right(width - empty.cell_len)
        blank = [Text(" " * width) for _ in range(rows - 1)]
        strip = _strip(chart, label_cells, cols)
        lines = [title, *blank[: rows // 2], empty, *blank[rows // 2 :], strip]
        return Drawn(lines, x=(chart.x_lo, chart.x_hi))
    axis, log = found
    canvas = _Canvas(cols, rows)
    x_span = chart.x_hi - chart.x_lo
    for curve in chart.curves:
        canvas.curve(curve, chart.x_lo, x_span, axis)
    lines = [title]
    labels = _labels(axis, rows, label_cells)
    for r in range(rows):
        line = Text(no_wrap=True, end="")
        line.append(f"{labels.get(r, ''):>{label_cells}}", "dim")
        line.append("┤" if r in labels else "│", "dim")
        line.append_text(canvas.row(r))
        lines.append(line)
    lines.append(_strip(chart, label_cells, cols))
    shown = (10**axis.lo, 10**axis.hi) if log else (axis.lo, axis.hi)
    return Drawn(lines, log, canvas.clipped, shown, (chart.x_lo, chart.x_hi))


def _labels(axis: Axis, rows: int, cells: int = LABEL_CELLS) -> dict[int, str]:
    """Row -> tick label: round values, every k-th of them, k the smallest that leaves a
    free row between any two."""
    positions, texts = axis.ticks(max(rows, 2) * 2)
    span = axis.hi - axis.lo or 1.0
    ticks = []
    for p, t in zip(positions, texts, strict=True):
        r = round((axis.hi - p) / span * (rows - 1))
        if 0 <= r < rows:
            value = 10**p if axis.log else p
            text = short(value, _digits(t)) if abs(value) >= 1000 else t
            ticks.append((r, fit(text, cells)))
    for k in range(1, len(ticks) + 1):
        chosen = ticks[::k]
        if all(abs(a[0] - b[0]) >= 2 for a, b in pairwise(chosen)):
            return dict(chosen)
    return dict(ticks[:1])


def short(v: float, digits: int = 3) -> str:
    """A large value in a few cells: 5.2k, 1.5M; 999.95k (rounded first) as 1M, and
    from 1e12 as 1.15e+18, never 1.15e+09G."""
    rounded = float(f"{v:.{digits}g}")  # the unit of what is written, not of v
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(rounded) >= scale:
            text = f"{rounded / scale:.{digits}g}"
            if "e" not in text:
                return text + unit
            break
    return f"{v:.{digits}g}"


def fit(text: str, cells: int) -> str:
    """A number's label in at most ``cells`` cells: its exponent written short
    (1.25e-4), then fewer digits, rounded (a label cut short reads as another number)."""
    if len(text) <= cells:
        return text
    try:
        v = float(text.rstrip("kMG"))
    except ValueError:
        return text[:cells]
    unit = text[-1] if text[-1] in "kMG" else ""
    for digits in range(_digits(text), 0, -1):
        for t in (f"{v:.{digits}g}", _short_exponent(f"{v:.{max(digits - 1, 0)}e}")):
            if len(t + unit) <= cells:
                return t + unit
    return text[:cells]


def _short_exponent(text: str) -> str:
    """1.25e-04 -> 1.25e-4, 3e+05 -> 3e5."""
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def _digits(text: str) -> int:
    """The significant digits of a label (at least 3)."""
    mantissa = text.lstrip("+-").partition("e")[0].rstrip("kMG").replace(".", "")
    return max(3, len(mantissa.strip("0")))


def _strip(chart: Chart, label_cells: int, cols: int) -> Text:
    """The bottom line: the step labels, the markers' glyphs between them (a label is
    never cut by a glyph: frequent saves would leave nothing of the step range)."""
    cells = [" "] * cols
    styles: list[str] = ["dim"] * cols
    span = chart.x_hi - chart.x_lo
    labelled: set[int] = set()
    left = label_cells + 1
    if chart.frame is not None:  # the plot above's labels, where it has them
        above = chart.frame.steps[left : left + cols]
        for j, ch in enumerate(above):
            if ch != " ":
                cells[j] = ch
                labelled.add(j)
        head = chart.frame.steps[:left].ljust(left)
        tail = chart.frame.steps[left + cols :].rstrip()  # a last label past the canvas
    else:
        head, tail = " " * left, ""
        _step_labels(chart, cells, labelled)
    for x, category in chart.markers:
        cell = _x_cell(x, chart.x_lo, span, cols)
        if cell is not None and not ({cell - 1, cell, cell + 1} & labelled):
            cells[cell] = category.glyph
            styles[cell] = category.color
    out = Text(no_wrap=True, end="")
    out.append(head, "dim" if head.strip() else None)
    for ch, style in zip(cells, styles, strict=True):
        out.append(ch, style)
    out.append(tail, "dim")
    return out


def _step_labels(chart: Chart, cells: list[str], labelled: set[int]) -> None:
    """The chart's own step labels in ``cells``: the window's ends and ``x_ticks`` - 2
    between (the cells they take go in ``labelled``)."""
    cols = len(cells)
    n = max(2, chart.x_ticks)
    span = chart.x_hi - chart.x_lo
    ticks = [(i / (n - 1), chart.x_lo + span * i / (n - 1)) for i in range(n)]
    if 0 < span < cols:
        # few steps, each a column or more wide: each label under the step it names, once
        # (not 2 under step 2.5 beside another 2)
        ticks = [((w - chart.x_lo) / span, w) for w in sorted({round(x) for _, x in ticks})]
    for i, (at_frac, x) in enumerate(ticks):
        text = fmt.count(round(x))
        at = round(at_frac * (cols - 1))
        last = i == len(ticks) - 1
        start = min(max(at - len(text) // 2, 0), cols - len(text)) if i > 0 and not last else at
        if last:
            start = cols - len(text)
        if i == 0:
            start = 0
        for j, ch in enumerate(text):
            if 0 <= start + j < cols:
                cells[start + j] = ch
                labelled.add(start + j)


def _x_cell(x: float, x_lo: float, span: float, cols: int) -> int | None:
    if span <= 0:
        return cols - 1 if x == x_lo else None
    f = (x - x_lo) / span
    return round(f * (cols - 1)) if -1e-9 <= f <= 1 + 1e-9 else None


class _Canvas:
    """Braille dots and a style per cell (the last curve drawn in a cell gives its colour)."""

    def __init__(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self.bits = [[0] * cols for _ in range(rows)]
        self.styles: list[list[str]] = [[""] * cols for _ in range(rows)]
        self.glyphs: dict[tuple[int, int], tuple[str, str]] = {}
        self.clipped = False

    def curve(self, curve: Curve, x_lo: float, x_span: float, axis: Axis) -> None:
        dots_w, dots_h = self.cols * 2, self.rows * 4
        half_row = (axis.hi - axis.lo) / max(self.rows - 1, 1) / 2
        by_col: dict[int, list[float]] = {}
        for x, y in zip(curve.xs, curve.ys, strict=True):
            if not math.isfinite(y) or (axis.log and y <= 0.0):
                continue
            f = (x - x_lo) / x_span if x_span > 0 else 1.0
            if not -1e-9 <= f <= 1 + 1e-9:
                continue
            c = round(f * (dots_w - 1))
            v = axis.to_plot(y)
            if v > axis.hi + half_row or v < axis.lo - half_row:
                cell = (0 if v > axis.hi else self.rows - 1, c // 2)
                self.glyphs[cell] = (CLIPPED_ABOVE if v > axis.hi else CLIPPED_BELOW, "bold")
                self.clipped = True
            r = (min(max(v, axis.lo), axis.hi) - axis.lo) / ((axis.hi - axis.lo) or 1.0)
            by_col.setdefault(c, []).append(r * (dots_h - 1))
        if len(by_col) == 1 and len(next(iter(by_col.values()))) == 1:
            ((c, [d]),) = by_col.items()
            self.glyphs[(self.rows - 1 - int(d) // 4, c // 2)] = (SINGLE, curve.style)
            return
        prev: tuple[int, float, float] | None = None
        for c in sorted(by_col):
            ds = by_col[c]
            lo, hi = min(ds), max(ds)
            if prev is not None:
                pc, plo, phi = prev
                # join the previous column's nearest end to this one's
                start = phi if lo > phi else plo if hi < plo else (lo + hi) / 2
                end = lo if lo > phi else hi if hi < plo else start
                for j in range(pc + 1, c):
                    y = start + (end - start) * (j - pc) / (c - pc)
                    self._dot(j, y, y, curve.style)
                lo, hi = min(lo, end), max(hi, end)
            self._dot(c, lo, hi, curve.style)
            prev = (c, min(ds), max(ds))

    def _dot(self, c: int, lo: float, hi: float, style: str) -> None:
        """Dots from lo to hi (dot rows from the bottom) in dot column c."""
        dots_h = self.rows * 4
        a, b = round(lo), round(hi)
        for d in range(max(a, 0), min(b, dots_h - 1) + 1):
            top = dots_h - 1 - d
            r, dy = divmod(top, 4)
            self.bits[r][c // 2] |= _BITS[dy][c % 2]
            self.styles[r][c // 2] = style

    def row(self, r: int) -> Text:
        out = Text(no_wrap=True, end="")
        bits, styles = self.bits[r], self.styles[r]
        run, run_style = "", ""
        for c in range(self.cols):
            glyph = self.glyphs.get((r, c))
            ch, style = glyph if glyph else (chr(0x2800 + bits[c]) if bits[c] else " ", styles[c])
            if style != run_style and run:
                out.append(run, run_style or None)
                run = ""
            run_style = style
            run += ch
        if run:
            out.append(run, run_style or None)
        return out


def value_text(v: float | None) -> str:
    """A metric's value in a title: three significant digits."""
    if v is None or not math.isfinite(v):
        return "no values" if v is None else str(v)
    return short(v) if abs(v) >= 1000 else label(v)


def last_finite(values: Sequence[float], stop: int, most: int = 4096) -> float | None:
    """The newest finite value before ``stop`` (looking back at most ``most`` values)."""
    for i in range(stop - 1, max(stop - most, 0) - 1, -1):
        v = values[i]
        if v - v == 0.0:
            return v
    return None
