"""The learning-rate plot: one line per param group, log-y, named in the legend."""

from __future__ import annotations

from typing import Any

from optitui.tui import decimate
from optitui.tui.widgets.history_plot import SERIES_COLORS, HistoryPlot, branch_color


class LrPlot(HistoryPlot):
    """The lr each group used at each step (log scale: schedules span decades)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.group_names: list[str] = []

    def set_group_names(self, names: list[str]) -> None:
        if names != self.group_names:
            self.group_names = list(names)
            self.dirty = True

    def group_label(self, index: int) -> str:
        return self.group_names[index] if index < len(self.group_names) else str(index)

    def draw(self, plt: Any) -> None:
        view = self.view
        start, stop = self.window_rows()
        plt.title(f"lr per group · {self.window_label()} · log-y")
        if stop <= start:
            return
        pieces = self.pieces(start, stop)
        x_lo, x_hi = decimate.x_range(view.step, pieces)
        tops: list[float] = []
        for k, (a, b, nb, left) in enumerate(pieces):  # a series per piece: no line goes back
            for index, column in view.lrs:
                pts = decimate.minmax(view.step, column, a, b, nb, positive=True)
                pts = pts.flat_runs_joined()
                if pts:
                    color = SERIES_COLORS[index % len(SERIES_COLORS)]
                    last = k == len(pieces) - 1
                    plt.plot(
                        pts.xs,
                        pts.ys,
                        marker="braille",
                        color=branch_color(color, left),  # dimmed: left behind by a restore
                        label=self.group_label(index) if last else None,
                    )
                    tops.append(max(pts.ys))
        self.draw_markers(plt, x_lo, x_hi, max(tops) if tops else None)
        self.step_axis(plt, x_lo, x_hi)
        if tops:
            plt.yscale("log")
