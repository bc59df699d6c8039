"""One metric's chart at full size (Enter on the metrics screen): l log-y, w window,
[ ] zoom, , . pan, 0 all steps, u pin under the loss plot, Esc back."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Static

from optitui.tui.metric_charts import Look
from optitui.tui.metric_history import titled
from optitui.tui.metrics_source import MetricsSource, window_words
from optitui.tui.span import Span, toggle_last
from optitui.tui.widgets.key_footer import KeyFooter
from optitui.tui.widgets.metric_chart import MetricChart


class MetricFullScreen(Screen[None]):
    """The chart of one metric, redrawn on the dashboard's clock."""

    DEFAULT_CSS = """
    MetricFullScreen #head { height: 1; padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "back", "back"),
        Binding("l", "log", "log-y"),
        Binding("w", "window", "window"),
        Binding("left_square_bracket", "zoom(True)", "zoom", key_display="[ ]"),
        Binding("right_square_bracket", "zoom(False)", "zoom out", show=False),
        Binding("comma", "pan(True)", "pan", key_display=", ."),
        Binding("full_stop", "pan(False)", "newer", show=False),
        Binding("0", "all_steps", "all steps"),
        Binding("u", "pin", "pin under loss"),
    ]

    def __init__(
        self, source: MetricsSource, name: str, look: Look, window: int, redraw_hz: float = 4.0
    ) -> None:
        super().__init__()
        self.source = source
        self.metric = name
        self.look = look
        self.window = window
        self.redraw_hz = redraw_hz

    def compose(self) -> ComposeResult:
        yield Static(id="head")
        yield MetricChart(self.metric, id="chart")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.refresh_data()
        self.set_interval(1.0 / self.redraw_hz, self.refresh_data)

    def refresh_data(self) -> None:
        src = self.source
        chart = self.query_one(MetricChart)
        chart.groups = tuple(src.steered_group_names())
        chart.show(src.metrics_view(), src.markers, src.shown_overlays(), self.look)
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(titled(self.metric, chart.groups), "bold")
        t.append(f"  · {window_words(self.look.span)}")
        if src.pinned == self.metric:
            t.append(" · under the loss plot")
        for ov in src.shown_overlays():
            t.append("  ━ ", "rgb({},{},{})".format(*ov.color))
            t.append(ov.name)
        self.query_one("#head", Static).update(t)

    def _rows(self) -> int:
        return self.source.metrics_view().length

    def _set(self, look: Look) -> None:
        self.look = look
        self.refresh_data()

    def action_back(self) -> None:
        self.dismiss(None)

    def action_log(self) -> None:
        drawn = self.query_one(MetricChart).last
        shown_log = drawn.log if drawn is not None else False
        self._set(replace(self.look, log_y=not shown_log))  # from the scale shown

    def action_window(self) -> None:
        self._set(replace(self.look, span=toggle_last(self.look.span, self.window)))

    def action_zoom(self, zoom_in: bool) -> None:
        self._set(replace(self.look, span=self.look.span.zoomed(zoom_in, self._rows())))

    def action_pan(self, older: bool) -> None:
        self._set(replace(self.look, span=self.look.span.panned(older, self._rows())))

    def action_all_steps(self) -> None:
        self._set(replace(self.look, span=Span()))

    def action_pin(self) -> None:
        pinned = self.source.pinned == self.metric
        self.source.pin_metric(None if pinned else self.metric)
        self.refresh_data()
