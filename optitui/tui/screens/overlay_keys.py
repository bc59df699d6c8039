"""Other runs over the steered run's plots: added from the command line or the runs
browser (b), each followed by a feed of its own and dropped with a notice when it goes
away; X places every run by wall time since its first step instead of by step."""

from __future__ import annotations

import threading
from pathlib import Path

from textual import on, work

from optitui.store.access import RunAccess
from optitui.tui.feed import FeedUpdate, follow
from optitui.tui.messages import OverlayEnded, OverlayUpdated
from optitui.tui.overlay import MAX_OVERLAYS, OVERLAY_COLORS, Overlay, short_names
from optitui.tui.overlay_feed import OverlayRun, overlay_run, run_key
from optitui.tui.pace import Pace
from optitui.tui.screens.steering_screen import SteeringScreen
from optitui.tui.settings import ViewerSettings
from optitui.tui.widgets.event_log import EventLog
from optitui.tui.widgets.history_plot import HistoryPlot, rich_color


def group_names(update: FeedUpdate) -> tuple[str, ...] | None:
    """A run's group names as its newest snapshot (else its metadata) has them."""
    if update.groups:
        return tuple(str(g.get("name", i)) for i, g in enumerate(update.groups))
    if update.meta is not None and isinstance(update.meta.get("groups"), list):
        return tuple(str(n) for n in update.meta["groups"])
    return None


class OverlayKeys(SteeringScreen):
    """Keeps the overlaid runs and gives the plots what they draw of them."""

    def __init__(self, run: RunAccess, settings: ViewerSettings, stop: threading.Event) -> None:
        super().__init__(run, settings, stop)
        #: the overlaid runs by directory, in the order they were added
        self.overlay_runs: dict[str, OverlayRun] = {}
        self.x_time = False
        self._groups_said: set[str] = set()  # overlays whose group names were compared
        #: how often the runs are read: within the viewer's share of a core (the steered
        #: run's updates measure it; the overlays are read as often)
        self.pace = Pace(settings.poll_interval, settings.cpu_budget)
        self._shown: tuple[Overlay, ...] = ()
        #: overlays whose first update is drawn, each read again only once the steered
        #: run's first update is (its whole history is the first frame's longest read:
        #: a whole overlay read beside it would only delay it)
        self._held: list[OverlayRun] = []
        self._steered_shown = False

    @property
    def plots(self) -> tuple[HistoryPlot, ...]:
        return tuple(self.query(HistoryPlot))

    def steered_dir(self) -> Path | None:
        """The directory of the run the keys steer (None for a run on another host)."""
        paths = getattr(self.run, "paths", None)
        return None if paths is None else Path(paths.root)

    # -- adding and removing -----------------------------------------------------------
    def add_overlay(self, ov: OverlayRun, wait: float = 0.0) -> str | None:
        """Follow ``ov`` over this run's plots; why not, when it is refused. Its history
        read ahead, when that read ends within ``wait`` seconds, is drawn in the frame it is
        added to."""
        steered = self.steered_dir()
        if steered is not None and ov.key == run_key(steered):
            return f"{ov.label} is the run the keys steer"
        if ov.key in self.overlay_runs:
            return f"{ov.label} is already overlaid"
        if len(self.overlay_runs) >= MAX_OVERLAYS:
            return f"at most {MAX_OVERLAYS} runs can be overlaid: remove one first (b, then Space)"
        used = [r.color for r in self.overlay_runs.values()]
        ov.color = next(c for c in OVERLAY_COLORS if c not in used)
        self.overlay_runs[ov.key] = ov
        self._name_overlays()
        # the short name first: a narrow log cuts the line's end, and the name is what the
        # legends show
        self.query_one(EventLog).note(f"overlaid as {ov.name}: {ov.label}", "magenta")
        first = ov.feed.ready(wait)  # read ahead: drawn in the frame this one is added to
        self._follow_overlay(ov, handed=first is not None)
        if first is not None:
            self._overlay_updated(OverlayUpdated(ov.key, first))
        return None

    def remove_overlay(self, key: str) -> OverlayRun | None:
        ov = self.overlay_runs.pop(key, None)
        if ov is not None:
            ov.stop.set()
            ov.consumed.set()
            self._groups_said.discard(key)
            self._name_overlays()
            self._overlays_changed()
        return ov

    def toggle_overlay(self, run_dir: Path) -> str:
        """Overlay a run, or stop overlaying it; what happened, in words."""
        key = run_key(run_dir)
        if key in self.overlay_runs:
            self.remove_overlay(key)
            return f"{run_dir.name}: no longer overlaid"
        problem = self.add_overlay(overlay_run(run_dir, self.settings.ema_beta))
        return problem or f"{run_dir.name}: overlaid"

    def stop_overlays(self) -> None:
        for ov in self.overlay_runs.values():
            ov.stop.set()
            ov.consumed.set()

    def overlay_colors(self) -> dict[str, str]:
        """Each overlaid run's colour as rich writes it, by directory."""
        return {k: rich_color(ov.color) for k, ov in self.overlay_runs.items()}

    def overlaid_dirs(self) -> list[Path]:
        return [ov.paths.root for ov in self.overlay_runs.values()]

    def _name_overlays(self) -> None:
        """Short names, told apart from each other and from the steered run's."""
        runs = list(self.overlay_runs.values())
        names = short_names([self.run.label, *(ov.label for ov in runs)])
        for ov, name in zip(runs, names[1:], strict=True):
            ov.name = name

    # -- following ---------------------------------------------------------------------
    @work(thread=True, group="overlays", exit_on_error=False)
    def _follow_overlay(self, ov: OverlayRun, handed: bool = False) -> None:
        key = ov.key

        def deliver(update: FeedUpdate) -> None:
            self.post_message(OverlayUpdated(key, update))

        def fatal(text: str) -> None:
            self.post_message(OverlayEnded(key, text))

        follow(ov.feed, deliver, ov.consumed, ov.stop, self.pace.wait, None, fatal, handed)

    @on(OverlayUpdated)
    def _overlay_updated(self, message: OverlayUpdated) -> None:
        ov = self.overlay_runs.get(message.key)
        if ov is None:
            return
        try:
            u = message.update
            names = group_names(u)
            if names is not None:
                ov.group_names = names
            if u.first:
                self._said_first(ov)
            self._compare_groups(ov)
            if u.grew or u.first:
                ov.view = u.view
                ov.updates += 1
                self._overlays_changed()
        finally:
            if message.update.first and not self._steered_shown:
                self._held.append(ov)
            else:
                ov.consumed.set()

    def steered_shown(self) -> None:
        """The steered run's first update is on screen (or never will be): the overlays
        are read on from now on."""
        self._steered_shown = True
        for ov in self._held:
            ov.consumed.set()
        self._held.clear()

    @on(OverlayEnded)
    def _overlay_ended(self, message: OverlayEnded) -> None:
        ov = self.remove_overlay(message.key)
        if ov is None:
            return
        text = f"{message.text}; dropped from the overlays"
        self.query_one(EventLog).note(text, "bold red")
        self.notify(text, severity="warning", timeout=6)

    def _said_first(self, ov: OverlayRun) -> None:
        version = ov.feed.version
        if version is not None:
            text = f"{ov.name} was written by optitui {version}: shown read-only"
            self.query_one(EventLog).note(text, "yellow")

    def steered_group_names(self) -> list[str]:
        """The steered run's group names, as the lr plot's legend has them."""
        return []

    def _compare_groups(self, ov: OverlayRun) -> None:
        """Say once when an overlaid run's groups are not the steered run's: its lrs are
        drawn by position, group i over group i."""
        mine = self.steered_group_names()
        if ov.key in self._groups_said or not mine or not ov.group_names:
            return
        self._groups_said.add(ov.key)
        if list(ov.group_names) != mine:
            self.query_one(EventLog).note(
                f"lr of {ov.name} overlaid by position: its groups are "
                f"{', '.join(ov.group_names)}; this run's are {', '.join(mine)}",
                "yellow",
            )

    def shown_overlays(self) -> tuple[Overlay, ...]:
        """The overlaid runs that have been read, as the plots draw them."""
        return self._shown

    def _overlays_changed(self) -> None:
        self._shown = tuple(
            Overlay(ov.name, ov.color, ov.view) for ov in self.overlay_runs.values() if ov.updates
        )
        for plot in self.plots:
            plot.set_overlays(self._shown)

    def overlay_lengths(self) -> tuple[int, ...]:
        """Each overlaid run's rows read so far (what a full frame draws)."""
        return tuple(ov.view.length for ov in self.overlay_runs.values() if ov.updates)

    # -- keys --------------------------------------------------------------------------
    def action_toggle_x(self) -> None:
        """X: the x axis by step, or by wall time since each run's first step."""
        self.x_time = not self.x_time
        for plot in self.plots:
            plot.set_x_time(self.x_time)
            plot.redraw()
        self.notify("x axis: time since start" if self.x_time else "x axis: step", timeout=2)

    def action_runs(self) -> None:
        """b: the runs browser, over the run root and the folders of the runs on screen."""
        steered = self.steered_dir()
        if steered is None:
            self.notify(
                "the runs browser lists runs on this host; this run is read over ssh",
                severity="warning",
                timeout=5,
            )
            return
        from optitui.tui.screens.runs_browser import RunsBrowser

        self.app.push_screen(RunsBrowser(self, self.browser_roots(), self.settings.clock))

    def browser_roots(self) -> list[Path]:
        """The steered run's folder and each overlaid run's: an overlay from elsewhere is
        listed, so Space can take it off (or make room for another)."""
        steered = self.steered_dir()
        if steered is None:
            return []
        roots = [steered.parent, *(ov.paths.root.parent for ov in self.overlay_runs.values())]
        return list(dict.fromkeys(roots))
