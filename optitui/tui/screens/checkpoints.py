"""Picking a checkpoint to restore: each one's step, losses, age, reason and tag."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from optitui.store.manifests import Manifest
from optitui.tui import fmt
from optitui.tui.messages import CheckpointsListed

#: how often the list is read again while open (a save may land meanwhile)
REFRESH_S = 1.0
COLUMNS = ("step", "loss", "val loss", "age", "reason", "tag", "id")
#: below this many columns the id is not a column (it is long): the line under the
#: table names the highlighted checkpoint's id instead
ID_COLUMN_FROM = 100


@dataclass(frozen=True)
class Picked:
    id: str
    step: int


def row(m: Manifest, now: float) -> tuple[str, ...]:
    loss = "-" if m.loss is None else f"{m.loss:.4g}"
    val = "-" if m.val_loss is None else f"{m.val_loss:.4g}"
    return (f"{m.step:,}", loss, val, fmt.duration(now - m.time), m.reason, m.tag or "", m.id)


class CheckpointPicker(ModalScreen[Picked | None]):
    """Newest first; Enter restores the highlighted one, Esc closes."""

    DEFAULT_CSS = """
    CheckpointPicker {
        align: center middle;
    }
    CheckpointPicker > Vertical {
        width: 110;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    CheckpointPicker DataTable {
        height: auto;
        max-height: 20;
    }
    CheckpointPicker #hint {
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]

    def __init__(
        self, listing: Callable[[], list[Manifest]], clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self.listing = listing  # the run's complete checkpoints, oldest first
        self.clock = clock
        self.manifests: list[Manifest] = []  # newest first, as shown
        self.reads = 0
        self.columns: tuple[str, ...] = COLUMNS
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Checkpoints: Enter restores (rewinds the run to it) · Esc closes")
            table: DataTable[str] = DataTable(cursor_type="row", zebra_stripes=True)
            yield table
            yield Label("reading…", id="hint")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        if self.app.size.width < ID_COLUMN_FROM:
            self.columns = COLUMNS[:-1]
        for c in self.columns:
            table.add_column(c, key=c)
        table.focus()
        self._list()

    def on_unmount(self) -> None:
        self._stop.set()

    @work(thread=True, exclusive=True, group="checkpoints", exit_on_error=False)
    def _list(self) -> None:
        last: list[Manifest] | None = None
        while not self._stop.is_set():
            try:
                found = self.listing()
            except OSError:  # a folder gone for a moment: read again next time
                found = last or []
            if found != last:
                self.post_message(CheckpointsListed(found))
                last = found
            self._stop.wait(REFRESH_S)

    @on(CheckpointsListed)
    def _listed(self, message: CheckpointsListed) -> None:
        table = self.query_one(DataTable)
        keep = table.cursor_row if self.manifests else 0
        chosen = self.manifests[keep].id if self.manifests else None
        self.manifests = list(reversed(message.manifests))
        now = self.clock()
        table.clear()
        for m in self.manifests:
            table.add_row(*row(m, now)[: len(self.columns)], key=m.id)
        ids = [m.id for m in self.manifests]
        if chosen in ids:  # the cursor stays on the same checkpoint when one is added
            table.move_cursor(row=ids.index(chosen), animate=False)
        self.reads += 1
        self._show_hint()

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_hint()

    def _show_hint(self) -> None:
        n = len(self.manifests)
        hint = "no checkpoints yet: s saves one" if not n else f"{n} checkpoint{'s' * (n != 1)}"
        row_index = self.query_one(DataTable).cursor_row
        if "id" not in self.columns and 0 <= row_index < n:
            hint += f" · id {self.manifests[row_index].id}"
        self.query_one("#hint", Label).update(hint)

    @on(DataTable.RowSelected)
    def _chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        picked = next((m for m in self.manifests if m.id == event.row_key.value), None)
        if picked is not None:
            self.dismiss(Picked(picked.id, picked.step))

    def action_close(self) -> None:
        self.dismiss(None)
