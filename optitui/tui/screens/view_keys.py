"""The keys that change what the dashboard shows, never the run: the loss axis's scale
(l), the steps in view (w, zoom with [ ], pan with , . and 0 for all steps) and the
event log's filter (v)."""

from __future__ import annotations

import threading

from optitui.store.access import RunAccess
from optitui.tui.screens.steering_screen import SteeringScreen
from optitui.tui.settings import ViewerSettings
from optitui.tui.span import Span, toggle_last
from optitui.tui.widgets.event_log import EventLog
from optitui.tui.widgets.history_plot import HistoryPlot
from optitui.tui.widgets.loss_plot import LossPlot
from optitui.tui.widgets.lr_plot import LrPlot
from optitui.tui.widgets.routine_line import RoutineLine


class ViewKeys(SteeringScreen):
    """One window of steps shared by both plots, the loss plot's scale, the log's filter."""

    def __init__(self, run: RunAccess, settings: ViewerSettings, stop: threading.Event) -> None:
        super().__init__(run, settings, stop)
        self.span = Span() if settings.show_all else Span(settings.window)
        self.log_y = settings.log_y

    def view_plots(self) -> tuple[HistoryPlot, ...]:
        return (self.query_one(LossPlot), self.query_one(LrPlot))

    def show_view(self) -> None:
        """Hand the window and the scale to the plots (at mount and after each key)."""
        for plot in self.view_plots():
            plot.set_span(self.span)
        self.query_one(LossPlot).set_log_y(self.log_y)

    def _set_span(self, span: Span) -> None:
        self.span = span
        self.show_view()
        for plot in self.view_plots():
            plot.redraw()

    def _rows(self) -> int:
        return self.query_one(LossPlot).view.length

    def action_toggle_log(self) -> None:
        loss = self.query_one(LossPlot)
        self.log_y = not loss.log_scale()  # from the scale shown, automatic or not
        self.show_view()
        loss.redraw()

    def action_toggle_window(self) -> None:
        self._set_span(toggle_last(self.span, self.settings.window))

    def action_zoom(self, zoom_in: bool) -> None:
        span = self.span.zoomed(zoom_in, self._rows())
        if span == self.span:
            what = "zoomed in as far as it goes" if zoom_in else "all steps are in view"
            self.notify(what, timeout=2)
            return
        self._set_span(span)

    def action_pan(self, older: bool) -> None:
        span = self.span.panned(older, self._rows())
        if span == self.span:
            if span.everything or (span.size or 0) >= self._rows():
                what = "all steps are in view: [ zooms in"
            else:
                what = "at the first step" if older else "at the newest step"
            self.notify(what, timeout=2)
            return
        self._set_span(span)

    def action_all_steps(self) -> None:
        self._set_span(Span())

    def action_log_filter(self) -> None:
        """The event log shows all lines, the commands only, or the warnings and errors."""
        shown = self.query_one(EventLog).next_filter()
        self.query_one(RoutineLine).set_filter(shown)
