"""What every steering key shares: the run, the commands sent, and the dialogs they ask.

:class:`SteeringScreen` is the base of the dashboard. The keys themselves are
split by subject into :mod:`~optitui.tui.screens.control_keys` (hyperparameters
and the optimizer) and :mod:`~optitui.tui.screens.run_keys` (range test,
checkpoints, failures); the dashboard adds the layout and the store feed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.screen import Screen

from optitui.store.access import RunAccess
from optitui.store.commands import CommandError
from optitui.store.reader import Status
from optitui.tui.fmt import group_words
from optitui.tui.messages import CommandAnswered
from optitui.tui.settings import ViewerSettings
from optitui.tui.steering import Change, Steering, await_outcome
from optitui.tui.widgets.command_status import CommandStatus
from optitui.tui.widgets.group_table import GroupTable

if TYPE_CHECKING:
    from optitui.tui.forms import Form


class SteeringScreen(Screen[None]):
    """Sends commands for one run; each shows as pending until the job answers."""

    def __init__(self, run: RunAccess, settings: ViewerSettings, stop: threading.Event) -> None:
        super().__init__()
        self.run = run
        self.settings = settings
        self.stop_event = stop
        self.steering = Steering(run)
        self.status: Status | None = None
        self.meta: dict[str, Any] = {}
        self.all_groups = False

    # -- what the keys act on ----------------------------------------------------------
    def target(self) -> tuple[int | None, str]:
        """(group index or None for all, its label) the keys act on now."""
        table = self.query_one(GroupTable)
        if self.all_groups or not table.groups:
            return None, "all groups"
        i = table.selected
        return i, group_words(table.label(i))

    def selected(self) -> tuple[int, str, dict[str, Any]] | None:
        """(index, label, snapshot) of the highlighted group, whatever the "all" toggle says."""
        table = self.query_one(GroupTable)
        group = table.selected_group()
        if group is None:
            self.notify("no param groups yet", severity="warning", timeout=3)
            return None
        return table.selected, table.label(table.selected), group

    @property
    def controls(self) -> dict[str, Any]:
        """The job's live controls (optimizer, scheduler, lookahead, ...); {} before it says."""
        found = self.meta.get("controls")
        return found if isinstance(found, dict) else {}

    # -- commands out ------------------------------------------------------------------
    def send(self, kind: str, args: dict[str, Any], label: str, group: int | None) -> Change:
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
        return change

    @work(thread=True, group="outcomes", exit_on_error=False)
    def _await_outcome(self, command_id: str) -> None:
        outcome, note = await_outcome(self.run, command_id, self.stop_event)
        self.post_message(CommandAnswered(command_id, outcome, note))

    @on(CommandAnswered)
    def _answered(self, message: CommandAnswered) -> None:
        self.steering.settle(message.command_id, message.outcome, message.note)
        self._changes_shown()
        self.query_one(GroupTable).mark_pending(self.steering.pending_groups())

    def _changes_shown(self) -> None:
        self.query_one(CommandStatus).show(self.steering.recent(2), self.all_groups)

    # -- dialogs -----------------------------------------------------------------------
    def run_over(self) -> bool:
        """Whether the run is over, said at once: a dialog to steer it would only be
        filled in to be told "not sent" when it is submitted."""
        status = self.status
        if status is None or status.alive:
            return False
        self.notify(
            f"the run is {status.state}: nothing can be sent to it", severity="warning", timeout=4
        )
        return True

    def ask(self, form: Form, then: Callable[[dict[str, Any]], None]) -> None:
        """Show ``form``; ``then`` gets the command's arguments once they are valid (no
        form while the run is over)."""
        if self.run_over():
            return
        from optitui.tui.screens.form import FormScreen  # loaded when first needed

        def done(args: dict[str, Any] | None) -> None:
            if args is not None:
                then(args)

        self.app.push_screen(FormScreen(form), done)

    def confirm(self, question: str, then: Callable[[], None]) -> None:
        from optitui.tui.screens.confirm import ConfirmScreen

        def done(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmScreen(question), done)
