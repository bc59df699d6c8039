"""The main screen: plots, group table, controls, command status and event log, wired to one run.

The screen owns the store feed (a thread worker posting :class:`StoreUpdated`)
and the commands this viewer sends (a thread worker per command awaiting its
outcome). Widgets only ever change here, on the UI thread. The steering keys
live in :class:`ControlKeys` and :class:`RunKeys`, which this screen combines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.worker import Worker, WorkerState

from optitui.store.access import RunAccess
from optitui.tui.chart_text import LABEL_CELLS
from optitui.tui.feed import Feed, FeedUpdate, follow
from optitui.tui.fmt import group_name
from optitui.tui.history import HistoryView, empty_view
from optitui.tui.keys import KEYS, listed
from optitui.tui.live_groups import (
    latest_lrs,
    latest_ratios,
    rows_before,
    with_live_lr,
    with_ratios,
)
from optitui.tui.markers import Marker, marker_for
from optitui.tui.messages import FeedProblem, StoreUnreadable, StoreUpdated
from optitui.tui.metric_charts import Look
from optitui.tui.metric_history import column_of, titled
from optitui.tui.overlay_feed import OverlayRun
from optitui.tui.screens.control_keys import ControlKeys
from optitui.tui.screens.overlay_keys import OverlayKeys
from optitui.tui.screens.run_keys import RunKeys
from optitui.tui.screens.view_keys import ViewKeys
from optitui.tui.settings import ViewerSettings
from optitui.tui.speed import speed
from optitui.tui.widgets.alert_banner import AlertBanner, needs_user
from optitui.tui.widgets.command_status import CommandStatus
from optitui.tui.widgets.controls_line import ControlsLine
from optitui.tui.widgets.event_log import EventLog
from optitui.tui.widgets.group_table import GroupTable
from optitui.tui.widgets.history_plot import HistoryPlot
from optitui.tui.widgets.key_footer import PALETTE_KEY_FROM, KeyFooter
from optitui.tui.widgets.loss_plot import LossPlot
from optitui.tui.widgets.lr_plot import LrPlot
from optitui.tui.widgets.metric_chart import MetricChart
from optitui.tui.widgets.plot_row import PlotRow
from optitui.tui.widgets.probe_notice import ProbeNotice, probe
from optitui.tui.widgets.ranks_line import RanksLine
from optitui.tui.widgets.routine_line import RoutineLine
from optitui.tui.widgets.status_bar import StatusBar

#: columns below which one plot shows at a time (the app's first horizontal breakpoint;
#: the key bar drops the palette's key below the same width)
COMPACT_BELOW = PALETTE_KEY_FROM


#: the plots' rows the metric pinned under the loss plot needs: the loss plot's title,
#: frame, three rows of curve, markers and step labels, and the chart's five rows
PINNED_NEEDS_ROWS = 13


class DashboardScreen(ControlKeys, RunKeys, ViewKeys, OverlayKeys):
    """Live view and keyboard control of one run, other runs overlaid on its plots."""

    DEFAULT_CSS = """
    DashboardScreen #plots { height: 3fr; min-height: 8; }
    DashboardScreen #loss-col { width: 3fr; }
    DashboardScreen LrPlot { width: 2fr; }
    DashboardScreen #pinned { display: none; height: 1fr; min-height: 5; }
    DashboardScreen.-pinned LossPlot { height: 2fr; }
    DashboardScreen.-pinned #pinned { display: block; }
    DashboardScreen.-pinned.-compact EventLog { max-height: 3; }
    DashboardScreen.-pinned.-no-room LossPlot { height: 1fr; }
    DashboardScreen.-pinned.-no-room #pinned { display: none; }
    DashboardScreen EventLog {
        height: 1fr; min-height: 3; max-height: 12; scrollbar-size-horizontal: 0;
    }
    DashboardScreen.-narrow #loss-col, DashboardScreen.-narrow LrPlot { width: 1fr; }
    DashboardScreen.-narrow GroupTable { scrollbar-size-horizontal: 0; }
    DashboardScreen.-short EventLog { max-height: 5; }
    DashboardScreen.-short GroupTable { max-height: 5; }
    /* a narrow terminal: one plot at full width (p shows the other) */
    DashboardScreen.-compact GroupTable { scrollbar-size-horizontal: 0; }
    DashboardScreen.-compact #loss-col, DashboardScreen.-compact LrPlot { width: 1fr; }
    DashboardScreen.-compact LrPlot { display: none; }
    DashboardScreen.-compact.-lr-shown LrPlot { display: block; }
    DashboardScreen.-compact.-lr-shown #loss-col { display: none; }
    DashboardScreen.-compact EventLog { max-height: 4; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            k.keys,
            k.action,
            k.short,
            show=k.footer,
            key_display=k.footer_display,
            group=Binding.Group(k.group, compact=True) if k.group else None,
        )
        for k in KEYS
    ]

    def __init__(
        self,
        run: RunAccess,
        feed: Feed,
        settings: ViewerSettings,
        stop: threading.Event,
        note: str = "",
        overlays: Sequence[OverlayRun] = (),
    ) -> None:
        super().__init__(run, settings, stop)
        self.note = note
        self._first_overlays = list(overlays)
        self.markers: list[Marker] = []
        self.store_problem: str | None = None  # set when this viewer cannot show the store
        self.link_problem: str | None = None  # a remote run's connection, while it is down
        self.updates = 0  # store updates handled; tests wait on it
        self._snapshot: list[dict[str, Any]] = []  # the job's newest group snapshot
        self._rows_at_snapshot = 0  # metric rows read when it arrived
        self._consumed = threading.Event()
        self._feed = feed
        self.latest: HistoryView = empty_view()  # the newest view of the whole history
        #: the metric drawn under the loss plot (u on the metrics screen)
        self.pinned: str | None = settings.pinned
        self.output_seen = False  # the job's captured output has shown in the log

    # -- layout ----------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        bar = StatusBar(self.run.label, id="status")
        bar.note = self.note
        yield bar
        yield AlertBanner(id="alert")
        yield ControlsLine(id="controls")
        yield RanksLine(id="ranks")
        yield ProbeNotice(id="probe")
        with PlotRow(id="plots"):
            with Vertical(id="loss-col"):
                yield LossPlot(id="loss")
                yield MetricChart(self.pinned or "", id="pinned")
            yield LrPlot(id="lr")
        yield GroupTable(id="groups")
        yield CommandStatus(id="commands")
        yield RoutineLine(id="routine")
        yield EventLog(id="log")
        yield KeyFooter()

    @property
    def plots(self) -> tuple[HistoryPlot, ...]:
        return (self.query_one(LossPlot), self.query_one(LrPlot))

    def on_mount(self) -> None:
        if self.pinned:
            self.pin_metric(self.pinned)
        self.show_view()
        for plot in self.plots:
            plot.set_x_time(self.x_time)
        self.query_one(CommandStatus).show([], self.all_groups)
        self.set_interval(1.0 / self.settings.redraw_hz, self.redraw)
        self.set_interval(1.0, self._tick)
        # the reads started while Textual loaded are waited for (a while at most), so
        # that the first frame has them rather than empty plots
        deadline = time.monotonic() + self.settings.first_read_wait

        def left() -> float:
            return max(deadline - time.monotonic(), 0.0)

        first = self._feed.ready(left())
        self._follow_store(handed=first is not None)
        for ov in self._first_overlays:
            problem = self.add_overlay(ov, wait=left())
            if problem is not None:
                ov.feed.close()
                self.query_one(EventLog).note(f"not overlaid: {problem}", "bold red")
        if first is not None:
            # a history read while Textual started goes into the first frame: no frame
            # of empty plots is drawn (and thrown away) before it
            self._store_updated(StoreUpdated(first))

    def on_unmount(self) -> None:
        self.stop_event.set()
        self.stop_overlays()

    # -- data in ---------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="feed", exit_on_error=False)
    def _follow_store(self, handed: bool = False) -> None:
        def deliver(update: FeedUpdate) -> None:
            self.post_message(StoreUpdated(update))

        def problem(text: str) -> None:
            self.post_message(FeedProblem(text))

        def fatal(text: str) -> None:
            self.post_message(StoreUnreadable(text))

        follow(
            self._feed,
            deliver,
            self._consumed,
            self.stop_event,
            self.pace.wait,
            problem,
            fatal,
            handed,
        )

    @on(FeedProblem)
    def _feed_problem(self, message: FeedProblem) -> None:
        self.query_one(EventLog).note(message.text, "bold red")
        self.steered_shown()  # the steered run is late: the overlays do not wait for it

    @on(StoreUnreadable)
    def _store_unreadable(self, message: StoreUnreadable) -> None:
        self.store_problem = message.text
        self.query_one(EventLog).note(message.text, "bold red")
        self._show_alert()
        self.steered_shown()  # nothing more comes from it: the overlays go on

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that died shows why in the log instead of taking the app down."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            what = f"{type(error).__name__}: {error}" if error else "unknown error"
            self.query_one(EventLog).note(f"{event.worker.name} failed: {what}", "bold red")
            self.steered_shown()

    @on(StoreUpdated)
    def _store_updated(self, message: StoreUpdated) -> None:
        try:
            self.apply(message.update)
        finally:
            self.pace.updated()
            self._consumed.set()

    def apply(self, u: FeedUpdate) -> None:
        before = needs_user(self.status)
        was_paused = self.paused()
        self.status = u.status
        if self.paused() != was_paused:
            self.refresh_bindings()  # n (one step) and space's "resume" while paused
        now = needs_user(u.status)
        if self.settings.bell and not u.first and now is not None and now != before:
            self.app.bell()  # once per change: the run needs the user
        if u.link != self.link_problem:
            if u.link is not None:
                self.query_one(EventLog).note(u.link, "bold red")
            else:
                self.query_one(EventLog).note("connection back: following the run again", "green")
            self.link_problem = u.link
        if u.meta is not None:
            self.meta = u.meta
            self.query_one(ControlsLine).show(self.meta)
            self.query_one(RanksLine).show(self.meta)
            self.query_one(ProbeNotice).show(self.meta)
            self.query_one(RoutineLine).set_policy(self.meta)
        table = self.query_one(GroupTable)
        if u.groups is not None:
            self._snapshot = u.groups
            self._rows_at_snapshot = rows_before(u.view, u.group_step, u.first)
        if u.groups is not None or u.grew:
            # the lr of the newest recorded step, once a step is newer than the snapshot
            newer = u.view.length > self._rows_at_snapshot
            shown = with_live_lr(self._snapshot, latest_lrs(u.view) if newer else {})
            shown = with_ratios(shown, latest_ratios(u.view))
            if shown != table.groups:
                table.set_groups(shown, self.steering.pending_groups())
        names = [table.label(i) for i in range(len(table.groups))] or [
            group_name({"name": n}, i) for i, n in enumerate(self.meta.get("groups", []))
        ]
        self.query_one(LrPlot).set_group_names(names)
        log = self.query_one(EventLog)
        if u.events:
            self.note_events(u.events)
            new = [m for m in map(marker_for, u.events) if m is not None]
            if new:
                self.markers = self.markers + new
                for plot in self.plots:
                    plot.set_markers(self.markers)
            log.add_events(u.events, names)
            self.query_one(RoutineLine).add_events(u.events)
        if u.output:
            log.add_output(u.output)
            self.output_seen = True
        for ov in self.overlay_runs.values():  # an overlay read first waited for the names
            self._compare_groups(ov)
        if u.grew or u.first:
            self.latest = u.view
            for plot in self.plots:
                plot.show(u.view)
        self.query_one(StatusBar).show(u.status, self.meta, self.settings.clock(), speed(u.view))
        self._show_alert()
        self.updates += 1
        if u.first:
            # the full history shows at once, not at the next tick, and at the plots'
            # final size: the group table this update filled takes rows from them, so
            # they are drawn once the layout has settled, never twice
            for plot in self.plots:
                plot.refresh()
            # the overlays' whole reads begin once this frame is drawn, not beside it
            self.call_after_refresh(self.steered_shown)

    def redraw(self) -> None:
        for plot in self.plots:
            plot.redraw()
        if self.pinned:
            loss = self.query_one(LossPlot)
            pinned = self.query_one("#pinned", MetricChart)
            pinned.groups = tuple(self.steered_group_names())
            # ``--pin update_ratio/head`` is the group's column once its name is known
            self.pinned = column_of(self.pinned, pinned.groups)
            pinned.set_metric(self.pinned)
            look = Look(loss.span)
            pinned.show(self.latest, self.markers, self.shown_overlays(), look, loss.line_up())

    # -- the metrics screen (m) and the metric under the loss plot ---------------------
    def metrics_view(self) -> HistoryView:
        return self.latest

    def want_metrics(self) -> None:
        """Have the feed keep every metric's pyramid from its next read on."""
        self._feed.history.extra.wanted = True

    def on_plot_row_resized(self, message: PlotRow.Resized) -> None:
        """The pinned chart gives its room back to the loss plot when sharing it would
        leave the loss plot fewer than three rows of curve (a short terminal, a banner)."""
        no_room = message.height < PINNED_NEEDS_ROWS
        if no_room != self.has_class("-no-room"):
            self.set_class(no_room, "-no-room")
            if no_room and self.pinned:
                name = titled(self.pinned, self.steered_group_names())
                self.notify(
                    f"{name} is pinned: it shows under the loss plot when the terminal is taller",
                    timeout=4,
                )

    def pinned_fits(self) -> bool:
        return not self.has_class("-no-room")

    def pin_metric(self, name: str | None) -> None:
        """Draw metric ``name`` under the loss plot (None: nothing there)."""
        self.pinned = name
        self.set_class(bool(name), "-pinned")
        # the loss plot's y axis line in the chart's column: a step is in the same
        # column in both
        self.query_one(LossPlot).set_label_cells(LABEL_CELLS if name else 0)
        if name:
            self.want_metrics()
            self.query_one("#pinned", MetricChart).set_metric(name)
            self.redraw()

    def action_metrics(self) -> None:
        from optitui.tui.screens.metrics import MetricsScreen

        s = self.settings
        self.app.push_screen(MetricsScreen(self, s.window, s.redraw_hz))

    def _tick(self) -> None:
        self.query_one(StatusBar).tick(self.settings.clock())
        self._show_alert()

    def _show_alert(self) -> None:
        banner = self.query_one(AlertBanner)
        traceback = self.last_traceback is not None
        banner.show(
            self.status,
            self.store_problem,
            traceback,
            self.settings.clock(),
            self.link_problem,
            self.output_seen,
        )

    def steered_group_names(self) -> list[str]:
        return self.query_one(LrPlot).group_names

    def browser_roots(self) -> list[Path]:
        root = self.settings.runs_root
        return list(dict.fromkeys([*([] if root is None else [root]), *super().browser_roots()]))

    # -- view keys (the plots' window and scale: ViewKeys) ----------------------------
    def on_resize(self) -> None:
        self._lr_names_markers()
        self.refresh_bindings()  # p shows in the footer only on a narrow terminal

    def action_toggle_plot(self) -> None:
        """Narrow terminals show one plot at a time: the loss, or the lr per group."""
        self.toggle_class("-lr-shown")
        self._lr_names_markers()

    def _lr_names_markers(self) -> None:
        """The lr plot names the markers' glyphs when the loss plot (which does) is hidden."""
        lr = self.query_one(LrPlot)
        key = self.size.width < COMPACT_BELOW and self.has_class("-lr-shown")
        if lr.marker_key != key:
            lr.marker_key = key
            lr.dirty = True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_plot":  # both plots show side by side when there is room
            return self.has_class("-compact")
        if action in ("pause", "resume"):  # space says what it does now
            return self.paused() == (action == "resume")
        if action == "step_once":
            # in the footer while paused, where there is room (80 columns has none); else
            # n is the hidden binding's, which steps while paused and otherwise says so
            return self.paused() and not self.has_class("-compact")
        return True

    def action_markers(self) -> None:
        from optitui.tui.screens.markers import MarkersScreen

        self.app.push_screen(MarkersScreen(self.markers))

    def action_help(self) -> None:
        from optitui.tui.screens.help import HelpScreen

        mode, limits, hint = probe(self.meta)
        self.app.push_screen(HelpScreen(listed(), mode, limits, hint))
