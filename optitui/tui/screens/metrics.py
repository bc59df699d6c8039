"""The metrics screen (m): every metric the run records besides the loss and the lr, a
small chart each, in sections; / filters by name, Enter opens one at full size, u pins
the chosen one under the loss plot; the machine's series at the bottom, as gauges."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Input, Static

from optitui.tui.metric_charts import Look
from optitui.tui.metric_history import titled
from optitui.tui.metrics_source import MetricsSource, window_words
from optitui.tui.screens.metric_full import MetricFullScreen
from optitui.tui.span import toggle_last
from optitui.tui.widgets.chart_grid import ChartGrid
from optitui.tui.widgets.key_footer import KeyFooter
from optitui.tui.widgets.system_panel import SystemPanel

#: the log axis's settings in turn (l): chosen per chart, log, linear
LOG_CYCLE: dict[bool | None, bool | None] = {None: True, True: False, False: None}
LOG_WORDS = {None: "log-y where the values span two decades", True: "log-y", False: "linear"}


class MetricsScreen(Screen[None]):
    """A grid of the run's metrics, redrawn on the dashboard's clock."""

    DEFAULT_CSS = """
    MetricsScreen #head { height: 1; padding: 0 1; }
    MetricsScreen #filter { height: 1; border: none; padding: 0 1; margin: 0; }
    MetricsScreen #filter:focus { background: $boost; }
    MetricsScreen.-short SystemPanel { max-height: 5; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "back", "back"),  # q as on the full-size chart (a filter takes q)
        # priority: the keys typed right after / (queued for the charts meanwhile) are
        # the filter's; a / typed into the filter is a character (check_action)
        Binding("slash", "filter", "filter", key_display="/", priority=True),
        Binding("enter", "open", "full size", show=True),
        Binding("u", "pin", "pin under loss"),
        Binding("l", "log", "log-y"),
        Binding("w", "window", "window"),
    ]

    def __init__(self, source: MetricsSource, window: int, redraw_hz: float) -> None:
        super().__init__()
        self.source = source
        self.window = window
        self.redraw_hz = redraw_hz
        self.look = Look()

    def compose(self) -> ComposeResult:
        yield Static(id="head")
        yield Input(placeholder="/ filters the charts by name", id="filter")
        yield ChartGrid(id="grid")
        yield SystemPanel(id="machine")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.source.want_metrics()
        self.query_one(ChartGrid).focus()
        self.refresh_data()
        self.set_interval(1.0 / self.redraw_hz, self.refresh_data)

    def refresh_data(self) -> None:
        grid = self.query_one(ChartGrid)
        src = self.source
        view = src.metrics_view()
        groups = tuple(src.steered_group_names())
        if groups != grid.groups:
            grid.groups = groups
            grid._cache.clear()
        grid.show(view, src.markers, src.shown_overlays(), self.look)
        self.query_one(SystemPanel).show(view.metrics.machine)
        self._head()

    def _head(self) -> None:
        grid = self.query_one(ChartGrid)
        total = len(grid.view.metrics.names())
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append("Metrics", "bold")
        shown = f"{len(grid.names)} of {total}" if grid.words else f"{total}"
        shown += " chart" if total == 1 else " charts"
        t.append(f"  {shown} · {window_words(self.look.span)} · {LOG_WORDS[self.look.log_y]}")
        if self.source.pinned:
            t.append("  · under the loss: ")
            t.append(titled(self.source.pinned, self.source.steered_group_names()), "bold")
        for ov in self.source.shown_overlays():
            t.append("  ━ ", "rgb({},{},{})".format(*ov.color))
            t.append(ov.name)
        self.query_one("#head", Static).update(t)

    # -- the filter ----------------------------------------------------------------------
    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_one(ChartGrid).set_filter(event.value)
        self._head()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.set_focus(self.query_one(ChartGrid))

    def action_filter(self) -> None:
        self.set_focus(self.query_one("#filter", Input))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # while the filter is typed into, its keys are letters, not actions
        if action in ("pin", "log", "window", "filter", "open"):
            return not isinstance(self.focused, Input)
        return True

    # -- the keys ------------------------------------------------------------------------
    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if self.focused is box:
            self.set_focus(self.query_one(ChartGrid))
            return
        self.dismiss(None)

    def action_open(self) -> None:
        name = self.query_one(ChartGrid).selected
        if name is not None:
            self._open(name)

    @on(ChartGrid.Opened)
    def _opened(self, message: ChartGrid.Opened) -> None:
        self._open(message.name)

    def _open(self, name: str) -> None:
        self.app.push_screen(
            MetricFullScreen(self.source, name, self.look, self.window, self.redraw_hz)
        )

    def action_pin(self) -> None:
        name = self.query_one(ChartGrid).selected
        if name is None:
            return
        if self.source.pinned == name:
            self.source.pin_metric(None)
            self.notify(f"{name}: no longer under the loss plot", timeout=3)
        else:
            self.source.pin_metric(name)
            where = (
                "shown under the loss plot"
                if self.source.pinned_fits()
                else "pinned: it shows under the loss plot when the terminal is taller"
            )
            self.notify(f"{name}: {where} (u again removes it)", timeout=3)
        self._head()

    def action_log(self) -> None:
        self.look = replace(self.look, log_y=LOG_CYCLE[self.look.log_y])
        self.refresh_data()

    def action_window(self) -> None:
        self.look = replace(self.look, span=toggle_last(self.look.span, self.window))
        self.refresh_data()
