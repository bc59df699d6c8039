"""The loss plot: raw loss (min/max per column), its smoothed EMA, and validation loss."""

from __future__ import annotations

from typing import Any

from optitui.tui import decimate
from optitui.tui.widgets.history_plot import HistoryPlot

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
        nb, pos = self.buckets, self.log_y
        raw = decimate.minmax(view.step, view.loss, start, stop, nb, pos)
        # the EMA is smooth: a point every other column draws the same curve
        smooth_stop = min(stop, view.smooth.length)
        smooth = decimate.last(view.step, view.smooth.at, start, smooth_stop, nb // 2, pos)
        x_lo, x_hi = view.step[start], view.step[stop - 1]
        v_lo, v_hi = decimate.val_range(view, x_lo, x_hi)
        # validation is sparse and smooth: the newest record per column is enough
        val = decimate.last(view.val_step, view.val_loss.raw.__getitem__, v_lo, v_hi, nb, pos)
        if raw:
            plt.plot(raw.xs, raw.ys, marker="braille", color=RAW_COLOR, label="loss")
        if smooth:
            plt.plot(smooth.xs, smooth.ys, marker="braille", color=SMOOTH_COLOR, label="smoothed")
        if val:
            plt.plot(val.xs, val.ys, marker="braille", color=VAL_COLOR, label="val")
        tops = [max(p.ys) for p in (raw, smooth, val) if p]
        self.draw_markers(plt, x_lo, x_hi, max(tops) if tops else None)
        self.step_axis(plt, x_lo, x_hi)
        if self.log_y and (raw or smooth or val):
            plt.yscale("log")
