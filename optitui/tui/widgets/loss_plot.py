"""The loss plot: raw loss (min/max per column), its smoothed EMA, and validation loss."""

from __future__ import annotations

from array import array
from typing import Any

from optitui.tui import decimate, y_range
from optitui.tui.decimate import Points
from optitui.tui.history import HistoryView
from optitui.tui.overlay import step_x
from optitui.tui.widgets.history_plot import HistoryPlot, Series, branch_color

RAW_COLOR = "gray"
SMOOTH_COLOR = "cyan"
VAL_COLOR = "green"
#: sparse validation records are points: they stay apart from the smoothed line, and it
#: stays visible between them
VAL_POINT = "•"


class LossPlot(HistoryPlot):
    """Training loss, smoothed loss and validation loss over the chosen window.

    The y axis spans a robust range of what is in view (:mod:`optitui.tui.y_range`):
    an early spike is clipped at the top edge and marked instead of flattening the
    rest. Unless the user chose a scale (**l**), the axis is logarithmic while the
    values in view span more than two decades.
    """

    #: other runs' smoothed losses range the axis as this run's own does
    OVERLAY_ROLE = "smooth"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.log_y = None  # the plot's own choice until the user picks one
        self.auto_log = False  # that choice in the last frame
        self.round_bottom = True  # the newest, lowest losses get a label beside them

    def title(self, short: bool = False) -> str:
        scale = "log-y" if self.log_scale() else "linear"
        if short:  # short or not, the title says when the x axis is by time
            window = self.window_label(short=True)
            return f"loss · {window or scale}{self.x_label()}"
        return f"loss · {self.window_label()}{self.x_label()} · {scale}"

    def overlay_lines(
        self, view: HistoryView, x: array[float], start: int, stop: int, buckets: int, log: bool
    ) -> list[Points]:
        """Another run's smoothed loss: its raw band would hide the runs under it."""
        stop = min(stop, view.smooth.length)
        return [decimate.last(x, view.smooth.at, start, stop, max(1, buckets // 2), log)]

    def log_scale(self) -> bool:
        return self.auto_log if self.log_y is None else self.log_y

    def y_limits(self, series: list[Series]) -> tuple[float, float] | None:
        by_role: dict[str, list[float]] = {"raw": [], "smooth": [], "val": []}
        for s in series:
            by_role.setdefault(s.role, []).extend(s.points.ys)
        limits = y_range.robust(by_role["smooth"], by_role["raw"], by_role["val"])
        if limits is not None and self.log_y is None:
            every = [y for ys in by_role.values() for y in ys]
            self.auto_log = y_range.auto_log(min(every), max(every), self.auto_log)
        return limits

    def draw(self, plt: Any) -> tuple[list[Series], tuple[float, float] | None]:
        view = self.view
        start, stop = self.window_rows()
        if stop <= start:
            return [], None
        pos = self.log_y is True  # chosen automatically only when every value is > 0
        pieces = self.pieces(start, stop)
        x = self.x_column()
        x_lo, x_hi = decimate.x_range(view.step, pieces)
        series: list[Series] = []
        for a, b, nb, left in pieces:  # a series per piece: no line goes back
            raw = decimate.minmax(x, view.loss, a, b, nb, pos)
            # the EMA is smooth: a point every other column draws the same curve
            smooth_b = min(b, view.smooth.length)
            smooth = decimate.last(x, view.smooth.at, a, smooth_b, max(1, nb // 2), pos)
            if raw:
                series.append(Series(raw, branch_color(RAW_COLOR, left), role="raw"))
            if smooth:
                series.append(Series(smooth, branch_color(SMOOTH_COLOR, left), role="smooth"))
        self._legend = [("━", "loss", RAW_COLOR), ("━", "smoothed", SMOOTH_COLOR)]
        vals = decimate.abandoned(view.val_step, decimate.val_ranges(view, x_lo, x_hi))
        for a, b, left in vals:
            # validation is sparse and smooth: the newest record per column is enough
            val = decimate.last(
                view.val_step, view.val_loss.raw.__getitem__, a, b, self.buckets, pos
            )
            if val and self.by_time():  # records are by step: at their step's time
                val = self._at_times(val)
            if val:
                color = branch_color(VAL_COLOR, left)
                if len(val) <= self.buckets // 3:  # sparse: a point per record, no line
                    series.append(Series(val, color, VAL_POINT, scatter=True, role="val"))
                else:  # over the curves' own line? dense enough to be a line itself
                    series.append(Series(val, color, role="val"))
        if vals:
            self._legend.append((VAL_POINT, "val", VAL_COLOR))
        return series, decimate.x_range(x, pieces)

    def _at_times(self, pts: Points) -> Points:
        out = Points()
        for s, y in zip(pts.xs, pts.ys, strict=True):
            t = step_x(self.view, s, True)
            if t is not None:
                out.xs.append(t)
                out.ys.append(y)
        return out
