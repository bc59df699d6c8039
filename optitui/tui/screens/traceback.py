"""The traceback of an error the job recorded, in full and scrollable."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static


class TracebackScreen(ModalScreen[None]):
    """Scrolls with the arrows, PgUp/PgDn, Home/End; Esc, q or t closes."""

    DEFAULT_CSS = """
    TracebackScreen {
        align: center middle;
    }
    TracebackScreen > Label {
        width: 100%;
        background: $error;
        color: $text;
        text-style: bold;
        padding: 0 1;
    }
    TracebackScreen VerticalScroll {
        width: 100%;
        height: 1fr;
        border: thick $error;
        background: $surface;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,t", "close", "Close")]

    def __init__(self, step: int, message: str, traceback: str) -> None:
        super().__init__()
        self.step = step
        self.message = message
        self.traceback = traceback

    def compose(self) -> ComposeResult:
        yield Label(f"error at step {self.step:,}: {self.message}", markup=False)
        with VerticalScroll():
            yield Static(self.traceback.rstrip(), markup=False, id="traceback")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)
