"""The loss plot: raw loss (min/max per column), its smoothed EMA, and validation loss."""

from __future__ import annotations

from typing import Any

from optitui.tui import decimate
from optitui.tui.widgets.history_plot import HistoryPlot, Series, branch_color

RAW_COLOR = "gray"
SMOOTH_COLOR = "cyan"
VAL_COLOR = "green"
#: sparse validation records are points: they stay apart from the smoothed line, and it
#: stays visible between them
VAL_POINT = "•"


class LossPlot(HistoryPlot):
    """Training loss, smoothed loss and validation loss over the chosen window."""

    def title(self, short: bool = False) -> str:
        scale = "log-y" if self.log_y else "linear"
        if short:
            return f"loss · {scale}" if self.show_all else f"loss · last {self.window}"
        return f"loss · {self.window_label()} · {scale}"

    def draw(self, plt: Any) -> tuple[list[Series], tuple[float, float] | None]:
        view = self.view
        start, stop = self.window_rows()
        if stop <= start:
            return [], None
        pos = self.log_y
        pieces = self.pieces(start, stop)
        x_lo, x_hi = decimate.x_range(view.step, pieces)
        series: list[Series] = []
        for a, b, nb, left in pieces:  # a series per piece: no line goes back
            raw = decimate.minmax(view.step, view.loss, a, b, nb, pos)
            # the EMA is smooth: a point every other column draws the same curve
            smooth_b = min(b, view.smooth.length)
            smooth = decimate.last(view.step, view.smooth.at, a, smooth_b, max(1, nb // 2), pos)
            if raw:
                series.append(Series(raw, branch_color(RAW_COLOR, left)))
            if smooth:
                series.append(Series(smooth, branch_color(SMOOTH_COLOR, left)))
        self._legend = [("━", "loss", RAW_COLOR), ("━", "smoothed", SMOOTH_COLOR)]
        vals = decimate.abandoned(view.val_step, decimate.val_ranges(view, x_lo, x_hi))
        for a, b, left in vals:
            # validation is sparse and smooth: the newest record per column is enough
            val = decimate.last(
                view.val_step, view.val_loss.raw.__getitem__, a, b, self.buckets, pos
            )
            if val:
                color = branch_color(VAL_COLOR, left)
                if len(val) <= self.buckets // 3:  # sparse: a point per record, no line
                    series.append(Series(val, color, VAL_POINT, scatter=True))
                else:  # over the curves' own line? dense enough to be a line itself
                    series.append(Series(val, color))
        if vals:
            self._legend.append((VAL_POINT, "val", VAL_COLOR))
        return series, (x_lo, x_hi)
