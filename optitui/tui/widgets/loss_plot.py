"""The loss plot: raw loss (min/max per column), its smoothed EMA, and validation loss."""

from __future__ import annotations

from typing import Any

from optitui.tui import decimate
from optitui.tui.widgets.history_plot import HistoryPlot, branch_color

RAW_COLOR = "gray"
SMOOTH_COLOR = "cyan"
VAL_COLOR = "green"


class LossPlot(HistoryPlot):
    """Training loss, smoothed loss and validation loss over the chosen window."""

    def draw(self, plt: Any) -> None:
        view = self.view
        start, stop = self.window_rows()
        scale = "log-y" if self.log_y else "linear"
        plt.title(f"loss · {self.window_label()} · {scale}")
        if stop <= start:
            return
        pos = self.log_y
        pieces = self.pieces(start, stop)
        x_lo, x_hi = decimate.x_range(view.step, pieces)
        drawn: list[decimate.Points] = []
        for k, (a, b, nb, left) in enumerate(pieces):  # a series per piece: no line goes back
            last = k == len(pieces) - 1
            raw = decimate.minmax(view.step, view.loss, a, b, nb, pos)
            # the EMA is smooth: a point every other column draws the same curve
            smooth_b = min(b, view.smooth.length)
            smooth = decimate.last(view.step, view.smooth.at, a, smooth_b, max(1, nb // 2), pos)
            if raw:
                plt.plot(
                    raw.xs,
                    raw.ys,
                    marker="braille",
                    color=branch_color(RAW_COLOR, left),
                    label=_if(last, "loss"),
                )
            if smooth:
                plt.plot(
                    smooth.xs,
                    smooth.ys,
                    marker="braille",
                    color=branch_color(SMOOTH_COLOR, left),
                    label=_if(last, "smoothed"),
                )
            drawn += [raw, smooth]
        vals = decimate.abandoned(view.val_step, decimate.val_ranges(view, x_lo, x_hi))
        for k, (a, b, left) in enumerate(vals):
            # validation is sparse and smooth: the newest record per column is enough
            val = decimate.last(
                view.val_step, view.val_loss.raw.__getitem__, a, b, self.buckets, pos
            )
            if val:
                newest = k == len(vals) - 1
                plt.plot(
                    val.xs,
                    val.ys,
                    marker="braille",
                    color=branch_color(VAL_COLOR, left),
                    label=_if(newest, "val"),
                )
            drawn.append(val)
        tops = [max(p.ys) for p in drawn if p]
        self.draw_markers(plt, x_lo, x_hi, max(tops) if tops else None)
        self.step_axis(plt, x_lo, x_hi)
        if self.log_y and tops:
            plt.yscale("log")


def _if(cond: bool, label: str) -> str | None:
    """Only the newest branch is named in the legend."""
    return label if cond else None
