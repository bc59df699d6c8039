"""Quitting a dashboard whose job is still going: detach, stop training, or cancel."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class QuitScreen(ModalScreen[str]):
    """Dismisses with "detach", "stop" or "cancel".

    Inline jobs live in this process, so they can only be stopped.
    """

    DEFAULT_CSS = """
    QuitScreen {
        align: center middle;
    }
    QuitScreen > Vertical {
        width: 64;
        max-width: 100%;
        height: auto;
        border: thick $warning;
        background: $surface;
        padding: 0 1;
    }
    QuitScreen Horizontal {
        height: auto;
        align: center middle;
    }
    QuitScreen Button {
        margin: 0 1;
    }
    QuitScreen Label {
        width: 1fr;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "choose('detach')", "Detach", show=False),
        Binding("s", "choose('stop')", "Stop training", show=False),
        Binding("escape,c", "choose('cancel')", "Cancel", show=False),
    ]

    def __init__(self, inline: bool) -> None:
        super().__init__()
        self.inline = inline

    def compose(self) -> ComposeResult:
        with Vertical():
            if self.inline:
                yield Label("Training runs inside this dashboard: quitting stops it.")
            else:
                yield Label("The job is still training. Detach leaves it running;")
                yield Label("`optitui attach` finds it again.")
            with Horizontal():
                if not self.inline:
                    yield Button("Detach (d)", id="detach", variant="primary")
                yield Button("Stop training (s)", id="stop", variant="error")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id:
            self.action_choose(event.button.id)

    def action_choose(self, choice: str) -> None:
        if choice == "detach" and self.inline:
            return
        self.dismiss(choice)
