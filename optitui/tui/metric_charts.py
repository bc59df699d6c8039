"""What one metric's chart shows: its points in the steps in view, decimated, with the
overlaid runs' and the markers.

A metric recorded per step is a min/max band per dot column from its pyramid (the main
plots' decimation: flat in history length); one logged between steps (``val_acc``) is
drawn from its own records, placed by their steps. Overlaid runs are drawn as lines (the
value at the end of each column) in their colours, under this run's own.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.text import Text

from optitui.tui import decimate
from optitui.tui.chart_text import LEFT, Chart, Curve, Frame, last_finite, value_text
from optitui.tui.decimate import Points
from optitui.tui.history import HistoryView
from optitui.tui.markers import Marker, in_view
from optitui.tui.metric_history import MetricSeries, titled
from optitui.tui.overlay import Overlay, final_pieces
from optitui.tui.span import Span

STEP_STYLE = "cyan"
LOGGED_STYLE = "green"


@dataclass(frozen=True)
class Look:
    """How the charts are drawn: the steps in view and the scale."""

    span: Span = field(default_factory=Span)
    log_y: bool | None = None  # None: chosen per chart (log over two decades)


def last_value(view: HistoryView, name: str) -> float | None:
    """The metric's newest value that is not NaN (per step before logged, the newest row
    first): an infinite one is shown as it is, a NaN is no value."""
    best: tuple[float, float] | None = None
    for s in view.metrics.of(name):
        n = s.length
        for i in range(n - 1, max(n - 4096, 0) - 1, -1):
            v = s.values.raw[i]
            if v == v:
                if best is None or s.x[i] > best[0]:
                    best = (s.x[i], v)
                break
    return None if best is None else best[1]


def x_window(view: HistoryView, series: Sequence[MetricSeries], span: Span) -> tuple[float, float]:
    """The steps the chart spans: the window's, and with all steps in view every record's."""
    start, stop = span.rows(view.length)
    los: list[float] = []
    his: list[float] = []
    if stop > start:
        pieces = decimate.segments(start, stop, view.breaks)
        lo, hi = decimate.x_range(view.step, pieces)
        los.append(lo)
        his.append(hi)
    if span.everything or not los:
        for s in series:
            if s.length:
                los.append(min(s.x[0], s.x[s.length - 1]))
                his.append(max(s.x[s.length - 1], s.x[0]))
    if not los:
        return 0.0, 1.0
    return min(los), max(his)


def _rows_in(s: MetricSeries, lo: float, hi: float) -> list[tuple[int, int, bool]]:
    """(first row, end row, left behind) of each branch of ``s`` with lo <= step <= hi."""
    out: list[tuple[int, int, bool]] = []
    parts = decimate.segments(0, s.length, s.breaks)
    for a, b, left in decimate.abandoned(s.x, parts):
        i = bisect_left(s.x, lo, a, b)
        j = bisect_right(s.x, hi, i, b)
        if j > i:
            out.append((i, j, left))
    return out


def own_curves(
    view: HistoryView, name: str, lo: float, hi: float, dots: int, positive: bool
) -> list[Curve]:
    out: list[Curve] = []
    span = max(hi - lo, 1e-12)
    for s in view.metrics.of(name):
        style = LOGGED_STYLE if s.logged else STEP_STYLE
        for a, b, left in _rows_in(s, lo, hi):
            width = max(2, int(dots * (s.x[b - 1] - s.x[a]) / span) + 1)
            pts = decimate.minmax(s.x, s.values, a, b, width, positive)
            if pts:
                out.append(Curve(pts.xs, pts.ys, f"dim {style}" if left else style, not left))
    return out


def overlay_curves(
    overlays: Sequence[Overlay], name: str, lo: float, hi: float, dots: int, positive: bool
) -> list[Curve]:
    """Other runs' values of the metric: a line each (the newest value per column)."""
    out: list[Curve] = []
    span = max(hi - lo, 1e-12)
    for ov in overlays:
        style = "rgb({},{},{})".format(*ov.color)
        final = final_pieces(ov.view)
        for s in ov.view.metrics.of(name):
            col = s.values.raw
            pieces = (
                _rows_in(s, lo, hi)
                if s.logged
                else [(a, b, False) for a, b in final if b <= s.length]
            )
            for a, b, left in pieces:
                if left:
                    continue
                i, j = bisect_left(s.x, lo, a, b), bisect_right(s.x, hi, a, b)
                if j <= i:
                    continue
                width = max(2, int(dots * (s.x[j - 1] - s.x[i]) / span) + 1)

                def at(k: int, col: Sequence[float] = col) -> float:
                    v = last_finite(col, k + 1, 64)
                    return math.nan if v is None else v

                pts: Points = decimate.last(s.x, at, i, j, width, positive)
                if pts:
                    out.append(Curve(pts.xs, pts.ys, style))
    return out


def chart_for(
    name: str,
    view: HistoryView,
    look: Look,
    width: int,
    *,
    overlays: Sequence[Overlay] = (),
    markers: Sequence[Marker] = (),
    selected: bool = False,
    x_ticks: int = 2,
    groups: Sequence[str] = (),
    frame: Frame | None = None,
) -> Chart:
    """The chart of metric ``name`` at ``width`` cells (in ``frame``'s layout and steps,
    when given: see :class:`~optitui.tui.chart_text.Frame`)."""
    series = view.metrics.of(name)
    if frame is not None:
        (lo, hi), cols = frame.x, frame.cols
    else:
        lo, hi = x_window(view, series, look.span)
        cols = width - LEFT
    dots = max(2, cols * 2)
    positive = look.log_y is True
    curves = overlay_curves(overlays, name, lo, hi, dots, positive)
    curves += own_curves(view, name, lo, hi, dots, positive)
    shown = in_view(list(markers), lo, hi, max(1, cols // 2))
    title = Text(no_wrap=True, end="")
    title.append(f" {titled(name, groups)} ", "reverse bold" if selected else "bold")
    value = last_value(view, name)
    said = "NaN" if series and value is None else value_text(value)  # only NaN so far
    title.append(f" {said}", LOGGED_STYLE if _logged_only(series) else STEP_STYLE)
    chart = Chart(
        title,
        curves,
        lo,
        hi,
        [(float(m.step), m.category) for m in shown],
        look.log_y,
        x_ticks,
        frame=frame,
    )
    if not series:  # a name misspelt, or a metric not recorded yet
        chart.empty = _not_a_metric(name)
    elif value is None:
        chart.empty = "only NaN so far"
    elif not math.isfinite(value or 0.0) and not curves:
        chart.empty = "no finite value so far"
    return chart


def _not_a_metric(name: str) -> str:
    """What a chart of a name no metric has says: where else it is drawn, or that nothing
    is recorded under it (a name misspelt, or a metric not recorded yet)."""
    if name == "loss":
        return "the loss is drawn in the loss plot"
    if name.startswith("lr/"):
        return "the lrs are drawn in the lr plot"
    return "nothing recorded under this name (m lists the metrics)"


def _logged_only(series: Sequence[MetricSeries]) -> bool:
    return bool(series) and all(s.logged for s in series)
