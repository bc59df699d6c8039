"""One metric's chart at the size of the widget: the metrics screen's full-size chart, and
the metric pinned under the loss plot on the main screen."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

from optitui.tui.chart_text import Drawn, Frame, draw
from optitui.tui.history import HistoryView, empty_view
from optitui.tui.markers import Marker
from optitui.tui.metric_charts import Look, chart_for
from optitui.tui.overlay import Overlay

#: cells per step label along the bottom
CELLS_PER_TICK = 16


class MetricChart(Widget):
    """The chart of :attr:`name`, drawn again only when what it shows changed."""

    DEFAULT_CSS = """
    MetricChart { height: 1fr; min-height: 5; }
    """

    def __init__(self, name: str = "", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.metric = name
        self.view: HistoryView = empty_view()
        self.markers: Sequence[Marker] = ()
        self.overlays: tuple[Overlay, ...] = ()
        self.look = Look()
        self.groups: tuple[str, ...] = ()  # the run's group names (health series by name)
        self.frame: Frame | None = None  # the layout of the plot above, to line up with
        self.last: Drawn | None = None
        self.frame_seconds = 0.0
        self._key: tuple[object, ...] | None = None
        self._text: Text | None = None

    def set_metric(self, name: str) -> None:
        if name != self.metric:
            self.metric = name
            self.refresh()

    def show(
        self,
        view: HistoryView,
        markers: Sequence[Marker],
        overlays: tuple[Overlay, ...],
        look: Look,
        frame: Frame | None = None,
    ) -> None:
        self.view, self.markers, self.overlays, self.look = view, markers, overlays, look
        self.frame = frame
        self.refresh()

    def render(self) -> RenderResult:
        w, h = self.size.width, self.size.height
        # by identity: a view holds a million values
        key = (
            self.metric,
            id(self.view),
            id(self.markers),
            self.overlays,
            self.look,
            self.groups,
            self.frame,
            w,
            h,
        )
        if key != self._key or self._text is None:
            t0 = time.perf_counter()
            chart = chart_for(
                self.metric,
                self.view,
                self.look,
                w,
                overlays=self.overlays,
                markers=self.markers,
                x_ticks=max(2, w // CELLS_PER_TICK),
                groups=self.groups,
                frame=self.frame,
            )
            chart.say_scale = True
            self.last = draw(chart, w, h)
            self._text = Text("\n", end="").join(self.last.lines)
            self._key = key
            self.frame_seconds = time.perf_counter() - t0
        return self._text
