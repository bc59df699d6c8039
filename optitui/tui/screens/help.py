"""The help screen: every key of the dashboard and what attach/detach mean."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

ABOUT = """\
The job trains in its own process (unless started with --inline); this
dashboard only reads its run store and drops commands in its inbox.
Quit with q: detach leaves the job training, stop ends it. Losing the
terminal detaches too. `optitui attach [RUN_DIR]` opens a dashboard on a
running job again; several may be open at once.

Changes show as pending (⋯) until the job applies them at a step boundary
(✓ with the step) or rejects them (✗ with the reason). Orange lines on the
plots mark hyperparameter changes."""


class HelpScreen(ModalScreen[None]):
    """Closes on any of escape, q, ? or F1."""

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 80;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark,f1", "close", "Close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        width = max((len(k) for k, _ in self.keys), default=4) + 2
        lines = [f"{k:<{width}}{what}" for k, what in self.keys]
        with VerticalScroll():
            yield Static("Keys\n\n" + "\n".join(lines) + "\n\n" + ABOUT, markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
