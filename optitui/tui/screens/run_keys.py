"""The keys about the run as a whole: the LR range test, the race, checkpoints, failures."""

from __future__ import annotations

import threading
from typing import Any

from optitui.store.access import RunAccess
from optitui.store.reader import EventRow
from optitui.tui.fmt import group_words
from optitui.tui.screens.steering_screen import SteeringScreen
from optitui.tui.settings import ViewerSettings
from optitui.tui.widgets.group_table import GroupTable


class RunKeys(SteeringScreen):
    """Range test (r), race (R), save (s), restore from the picker (c), traceback (t)."""

    def __init__(self, run: RunAccess, settings: ViewerSettings, stop: threading.Event) -> None:
        super().__init__(run, settings, stop)
        self.range_test_ids: list[str] = []  # every range test the job announced, oldest first
        self.race_ids: list[str] = []  # every race the job announced, oldest first
        self.last_traceback: EventRow | None = None  # the newest error event with a traceback

    def note_events(self, events: tuple[EventRow, ...]) -> None:
        """Keep what these keys need from the job's events."""
        for e in events:
            data = e.data or {}
            test_id = data.get("id")
            new = isinstance(test_id, str) and test_id not in self.range_test_ids
            if data.get("marker") == "lr-find" and new:
                self.range_test_ids.append(str(test_id))
            if data.get("marker") == "race" and test_id not in self.race_ids:
                self.race_ids.append(str(test_id))
            if e.kind == "error" and isinstance(data.get("traceback"), str):
                self.last_traceback = e

    def _live_one(self, state: str, ids: list[str]) -> bool:
        """The run is in ``state`` (a range test, a race) and announced which one."""
        return self.status is not None and self.status.state == state and bool(ids)

    def _selected(self) -> tuple[int, str] | None:
        """The selected group (index, label) when keys act on one group, else None."""
        table = self.query_one(GroupTable)
        if table.groups and not self.all_groups:
            return table.selected, table.label(table.selected)
        return None

    # -- the range test -----------------------------------------------------------------
    def action_range_test(self) -> None:
        """Open the running range test, or ask for a new one."""
        from optitui.tui import forms  # loaded when first needed

        if self._live_one("lr-find", self.range_test_ids):
            self.open_range_test(self.range_test_ids[-1])
            return
        selected = self._selected()

        def start(args: dict[str, Any]) -> None:
            group = args.get("group")
            where = "all groups" if selected is None or group is None else group_words(selected[1])
            shown = " ".join(f"{k}={v}" for k, v in args.items() if k != "group")
            label = f"range test ({where}{', ' + shown if shown else ''})"
            change = self.send("lr-find", args, label, group)
            if change.state == "pending":  # the test is named after the command
                self.open_range_test(change.id)

        self.ask(forms.lr_find_form(selected), start)

    def open_range_test(self, test_id: str) -> None:
        from optitui.tui.screens.range_test import RangeTestChoice, RangeTestScreen

        def done(choice: RangeTestChoice | None) -> None:
            if choice is None:
                return
            if choice.rule is None:
                self.send("lr-find-cancel", {}, "cancel the range test", None)
                return
            lr = "" if choice.lr is None else f" lr {choice.lr:.3g}"
            self.send(
                "lr-find-apply",
                {"id": test_id, "rule": choice.rule},
                f"apply range test: {choice.rule}{lr}",
                None,
            )

        self.app.push_screen(RangeTestScreen(self.run, test_id), done)

    # -- the race -----------------------------------------------------------------------
    def action_race(self) -> None:
        """Open the running race, or ask for a new one."""
        from optitui.tui import forms  # loaded when first needed

        if self._live_one("race", self.race_ids):
            self.open_race(self.race_ids[-1])
            return
        selected = self._selected()

        def start(args: dict[str, Any]) -> None:
            group = args.get("group")
            where = "" if group is None or selected is None else f", {group_words(selected[1])}"
            label = f"race {' '.join(args['candidates'])}{where}"
            change = self.send("race", args, label, group)
            if change.state == "pending":  # the race is named after the command
                self.open_race(change.id)

        self.ask(forms.race_form(selected), start)

    def open_race(self, race_id: str) -> None:
        from optitui.tui.screens.race import RaceChoice, RaceScreen

        def done(choice: RaceChoice | None) -> None:
            if choice is None:
                return
            if choice.candidate is None:
                self.send("race-cancel", {}, "cancel the race", None)
            elif choice.candidate == 0:
                self.notify("current is the settings as they are: nothing to change", timeout=3)
            else:
                args = {"id": race_id, "candidate": choice.candidate}
                self.send("race-apply", args, f"apply race candidate: {choice.text}", None)

        self.app.push_screen(RaceScreen(self.run, race_id), done)

    # -- checkpoints --------------------------------------------------------------------
    def action_save(self) -> None:
        from optitui.tui import forms  # loaded when first needed

        def save(args: dict[str, Any]) -> None:
            tag = args.get("tag")
            self.send("save", args, f"save checkpoint{f' {tag}' if tag else ''}", None)

        self.ask(forms.save_form(), save)

    def action_checkpoints(self) -> None:
        from optitui.tui.screens.checkpoints import CheckpointPicker, Picked

        def restore(picked: Picked | None) -> None:
            if picked is not None:
                label = f"restore step {picked.step} ({picked.id})"
                self.send("restore", {"id": picked.id}, label, None)

        self.app.push_screen(CheckpointPicker(self.run.checkpoints, self.settings.clock), restore)

    # -- failures -----------------------------------------------------------------------
    def action_traceback(self) -> None:
        event = self.last_traceback
        if event is None:
            self.notify("no error with a traceback in this run", timeout=3)
            return
        from optitui.tui.screens.traceback import TracebackScreen

        data = event.data or {}
        self.app.push_screen(TracebackScreen(event.step, event.message, str(data["traceback"])))
