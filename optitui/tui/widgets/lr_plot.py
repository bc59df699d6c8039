"""The learning-rate plot: one line per param group, log-y, named in the legend."""

from __future__ import annotations

from array import array
from typing import Any

from optitui.tui import decimate
from optitui.tui.decimate import Points
from optitui.tui.history import HistoryView
from optitui.tui.widgets.history_plot import SERIES_COLORS, HistoryPlot, Series, branch_color


class LrPlot(HistoryPlot):
    """The lr each group used at each step (log scale: schedules span decades)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.group_names: list[str] = []
        self.marker_key = False  # the loss plot names the markers, unless it is hidden

    def set_group_names(self, names: list[str]) -> None:
        if names != self.group_names:
            self.group_names = list(names)
            self.dirty = True

    def group_label(self, index: int) -> str:
        return self.group_names[index] if index < len(self.group_names) else f"group {index}"

    def title(self, short: bool = False) -> str:
        if short:  # short or not, the title says when the x axis is by time
            window = self.window_label(short=True)
            return f"lr · {window}{self.x_label()}" if window else f"lr{self.x_label()}"
        what = "lr per group" if len(self.view.lrs) > 1 else "lr"
        return f"{what} · {self.window_label()}{self.x_label()} · log-y"

    def overlay_lines(
        self, view: HistoryView, x: array[float], start: int, stop: int, buckets: int, log: bool
    ) -> list[Points]:
        """Another run's groups, each the lr at the end of each column (by position)."""
        out = []
        for _, column in view.lrs:
            end = min(stop, column.length)
            pts = decimate.last(x, column.raw.__getitem__, start, end, buckets, positive=True)
            out.append(pts.flat_runs_joined())
        return out

    def log_scale(self) -> bool:
        return True

    def draw(self, plt: Any) -> tuple[list[Series], tuple[float, float] | None]:
        view = self.view
        start, stop = self.window_rows()
        if stop <= start:
            return [], None
        pieces = self.pieces(start, stop)
        x = self.x_column()
        series: list[Series] = []
        named: dict[int, Any] = {}
        for a, b, nb, left in pieces:  # a series per piece: no line goes back
            for index, column in view.lrs:
                pts = decimate.minmax(x, column, a, b, nb, positive=True)
                pts = pts.flat_runs_joined()
                if pts:
                    color = SERIES_COLORS[index % len(SERIES_COLORS)]
                    # dimmed: left behind by a restore
                    series.append(Series(pts, branch_color(color, left)))
                    named[index] = color
        if len(named) > 1:  # one group's line needs no name
            self._legend = [("━", self.group_label(i), c) for i, c in sorted(named.items())]
        return series, decimate.x_range(x, pieces)
