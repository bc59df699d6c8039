"""The main screen: plots, group table, command status and event log, wired to one run.

The screen owns the store feed (a thread worker posting :class:`StoreUpdated`)
and the commands this viewer sends (a thread worker per command awaiting its
outcome). Widgets only ever change here, on the UI thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerState

from optitui.store.commands import CommandError
from optitui.store.layout import RunPaths
from optitui.store.reader import Status
from optitui.tui.feed import FeedUpdate, StoreFeed, follow
from optitui.tui.markers import Marker, marker_for
from optitui.tui.messages import CommandAnswered, FeedProblem, StoreUpdated
from optitui.tui.settings import ViewerSettings
from optitui.tui.steering import Steering, await_outcome
from optitui.tui.widgets.command_status import CommandStatus
from optitui.tui.widgets.event_log import EventLog
from optitui.tui.widgets.group_table import GroupTable
from optitui.tui.widgets.history_plot import HistoryPlot
from optitui.tui.widgets.loss_plot import LossPlot
from optitui.tui.widgets.lr_plot import LrPlot
from optitui.tui.widgets.status_bar import StatusBar


@dataclass(frozen=True)
class Key:
    keys: str
    action: str
    short: str
    long: str
    show: bool = True
    display: str | None = None


#: every key of the dashboard; footer, help screen and command palette read this.
#: r, s, c and f stay free for the range test and checkpoints.
KEYS = (
    Key("up", "move_group(-1)", "group", "select the previous param group", True, "↑↓"),
    Key("down", "move_group(1)", "group", "select the next param group", False),
    Key("plus,equals_sign", "scale_lr(1)", "lr+", "lr × fine factor (1.1)", True, "+"),
    Key("minus", "scale_lr(-1)", "lr-", "lr ÷ fine factor", True, "-"),
    Key("asterisk", "scale_lr(2)", "lr++", "lr × coarse factor (2)", True, "*"),
    Key("slash", "scale_lr(-2)", "lr--", "lr ÷ coarse factor", True, "/"),
    Key("a", "toggle_all", "all", "toggle: keys act on all groups / the selected one"),
    Key("e", "edit", "edit", "edit any field of the selected group (validated)"),
    Key("space", "pause", "pause", "pause / resume training", True, "spc"),
    Key("n", "step_once", "step", "while paused: train one step, then pause again"),
    Key("l", "toggle_log", "log-y", "loss plot: toggle log-y"),
    Key("w", "toggle_window", "window", "plots: toggle last N steps / all"),
    Key("question_mark,f1", "help", "help", "this help", True, "?"),
    Key("q", "app.quit", "quit", "quit: detach (job keeps training) / stop / cancel"),
)


class DashboardScreen(Screen[None]):
    """Live view and keyboard control of one run."""

    DEFAULT_CSS = """
    DashboardScreen #plots { height: 3fr; min-height: 8; }
    DashboardScreen LossPlot { width: 3fr; }
    DashboardScreen LrPlot { width: 2fr; }
    DashboardScreen EventLog { height: 1fr; min-height: 3; max-height: 12; }
    DashboardScreen.-narrow LossPlot, DashboardScreen.-narrow LrPlot { width: 1fr; }
    DashboardScreen.-narrow GroupTable { scrollbar-size-horizontal: 0; }
    DashboardScreen.-short EventLog { max-height: 5; }
    DashboardScreen.-short GroupTable { max-height: 5; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(k.keys, k.action, k.short, show=k.show, key_display=k.display) for k in KEYS
    ]

    def __init__(
        self,
        paths: RunPaths,
        settings: ViewerSettings,
        stop: threading.Event,
        note: str = "",
        feed: StoreFeed | None = None,
    ) -> None:
        super().__init__()
        self.note = note
        self.paths = paths
        self.settings = settings
        self.stop_event = stop
        self.steering = Steering(paths)
        self.status: Status | None = None
        self.meta: dict[str, Any] = {}
        self.markers: list[Marker] = []
        self.all_groups = False
        self.show_all = settings.show_all
        self.log_y = settings.log_y
        self.updates = 0  # store updates handled; tests wait on it
        self._consumed = threading.Event()
        self._feed = feed or StoreFeed(paths.root, ema_beta=settings.ema_beta, clock=settings.clock)

    # -- layout ----------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        bar = StatusBar(self.paths.root.name, id="status")
        bar.note = self.note
        yield bar
        with Horizontal(id="plots"):
            yield LossPlot(id="loss")
            yield LrPlot(id="lr")
        yield GroupTable(id="groups")
        yield CommandStatus(id="commands")
        yield EventLog(id="log")
        yield Footer()

    @property
    def plots(self) -> tuple[HistoryPlot, ...]:
        return (self.query_one(LossPlot), self.query_one(LrPlot))

    def on_mount(self) -> None:
        for plot in self.plots:  # the lr plot is always log-y
            plot.set_options(show_all=self.show_all, window=self.settings.window, log_y=self.log_y)
        self.query_one(CommandStatus).show([], self.all_groups)
        self.set_interval(1.0 / self.settings.redraw_hz, self.redraw)
        self.set_interval(1.0, self._tick)
        self._follow_store()

    def on_unmount(self) -> None:
        self.stop_event.set()

    # -- data in ---------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="feed", exit_on_error=False)
    def _follow_store(self) -> None:
        def deliver(update: FeedUpdate) -> None:
            self.post_message(StoreUpdated(update))

        def problem(text: str) -> None:
            self.post_message(FeedProblem(text))

        follow(
            self._feed,
            deliver,
            self._consumed,
            self.stop_event,
            self.settings.poll_interval,
            problem,
        )

    @on(FeedProblem)
    def _feed_problem(self, message: FeedProblem) -> None:
        self.query_one(EventLog).note(message.text, "bold red")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that died shows why in the log instead of taking the app down."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            what = f"{type(error).__name__}: {error}" if error else "unknown error"
            self.query_one(EventLog).note(f"{event.worker.name} failed: {what}", "bold red")

    @on(StoreUpdated)
    def _store_updated(self, message: StoreUpdated) -> None:
        try:
            self.apply(message.update)
        finally:
            self._consumed.set()

    def apply(self, u: FeedUpdate) -> None:
        self.status = u.status
        if u.meta is not None:
            self.meta = u.meta
        table = self.query_one(GroupTable)
        if u.groups is not None:
            table.set_groups(u.groups, self.steering.pending_groups())
        names = [table.label(i) for i in range(len(table.groups))] or [
            str(n) for n in self.meta.get("groups", [])
        ]
        self.query_one(LrPlot).set_group_names(names)
        log = self.query_one(EventLog)
        if u.events:
            new = [m for m in map(marker_for, u.events) if m is not None]
            if new:
                self.markers = self.markers + new
                for plot in self.plots:
                    plot.set_markers(self.markers)
            log.add_events(u.events)
        if u.output:
            log.add_output(u.output)
        if u.grew or u.first:
            for plot in self.plots:
                plot.show(u.view)
        self.query_one(StatusBar).show(u.status, self.meta, self.settings.clock())
        self.updates += 1
        if u.first:
            self.redraw()  # the full history shows at once, not at the next tick

    def redraw(self) -> None:
        for plot in self.plots:
            plot.redraw()

    def _tick(self) -> None:
        self.query_one(StatusBar).tick(self.settings.clock())

    # -- commands out ----------------------------------------------------------------
    def target(self) -> tuple[int | None, str]:
        """(group index or None for all, its label) the keys act on now."""
        table = self.query_one(GroupTable)
        if self.all_groups or not table.groups:
            return None, "all groups"
        i = table.selected
        return i, f"group {table.label(i)}"

    def send(self, kind: str, args: dict[str, Any], label: str, group: int | None) -> None:
        """Send a command and show it as pending; the outcome arrives as a message."""
        status = self.status
        if status is not None and not status.alive:
            change = self.steering.refuse(kind, args, label, f"not sent: the run is {status.state}")
        else:
            try:
                change = self.steering.send(kind, args, label, group)
            except (CommandError, OSError) as exc:
                change = self.steering.refuse(kind, args, label, f"not sent: {exc}")
            else:
                self._await_outcome(change.id)
        self._changes_shown()
        if change.state == "pending":
            self.query_one(GroupTable).mark_pending(self.steering.pending_groups())

    @work(thread=True, group="outcomes", exit_on_error=False)
    def _await_outcome(self, command_id: str) -> None:
        outcome, note = await_outcome(self.paths, command_id, self.stop_event)
        self.post_message(CommandAnswered(command_id, outcome, note))

    @on(CommandAnswered)
    def _answered(self, message: CommandAnswered) -> None:
        self.steering.settle(message.command_id, message.outcome, message.note)
        self._changes_shown()
        self.query_one(GroupTable).mark_pending(self.steering.pending_groups())

    def _changes_shown(self) -> None:
        self.query_one(CommandStatus).show(self.steering.recent(2), self.all_groups)

    # -- actions ---------------------------------------------------------------------
    def action_move_group(self, delta: int) -> None:
        self.query_one(GroupTable).move(delta)

    def action_scale_lr(self, which: int) -> None:
        s = self.settings
        base = s.fine_factor if abs(which) == 1 else s.coarse_factor
        factor = base if which > 0 else 1.0 / base
        group, where = self.target()
        args: dict[str, Any] = {"factor": factor}
        if group is not None:
            args["group"] = group
        sign = f"×{base:g}" if which > 0 else f"÷{base:g}"
        self.send("scale-lr", args, f"lr {sign} ({where})", group)

    def action_toggle_all(self) -> None:
        self.all_groups = not self.all_groups
        table = self.query_one(GroupTable)
        table.border_title = "all groups" if self.all_groups else None
        table.set_class(self.all_groups, "-all")
        self._changes_shown()
        self.notify(
            "keys act on all groups" if self.all_groups else "keys act on the selected group",
            timeout=2,
        )

    def action_edit(self) -> None:
        group = self.query_one(GroupTable).selected_group()
        if group is None:
            self.notify("no param groups yet", severity="warning", timeout=3)
            return
        index, where = self.target()

        def done(result: tuple[str, Any] | None) -> None:
            if result is None:
                return
            field, value = result
            args: dict[str, Any] = {"values": {field: value}}
            if index is not None:
                args["group"] = index
            shown = ", ".join(map(str, value)) if isinstance(value, tuple) else value
            self.send("set", args, f"{field}={shown} ({where})", index)

        from optitui.tui.screens.field_editor import FieldEditor  # loaded when first needed

        self.app.push_screen(FieldEditor(group, where), done)

    def action_pause(self) -> None:
        paused = self.status is not None and self.status.state == "paused"
        self.send("resume" if paused else "pause", {}, "resume" if paused else "pause", None)

    def action_step_once(self) -> None:
        if self.status is None or self.status.state != "paused":
            self.notify("n steps once while paused; space pauses", timeout=3)
            return
        self.send("step", {"n": 1}, "step 1", None)

    def action_toggle_log(self) -> None:
        self.log_y = not self.log_y
        loss = self.query_one(LossPlot)
        loss.log_y = self.log_y
        loss.dirty = True
        self.redraw()

    def action_toggle_window(self) -> None:
        self.show_all = not self.show_all
        for plot in self.plots:
            plot.set_options(show_all=self.show_all, window=self.settings.window)
        self.redraw()

    def action_help(self) -> None:
        from optitui.tui.screens.help import HelpScreen

        keys = [(k.display or k.keys, k.long) for k in KEYS if k.show]
        self.app.push_screen(HelpScreen(keys))
