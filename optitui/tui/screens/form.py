"""A small form for one command: text fields and pick lists, checked before anything is sent."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select

from optitui.tui.forms import Form


class FormScreen(ModalScreen[dict[str, Any] | None]):
    """Dismisses with the command's arguments, or None when cancelled.

    Enter in any text field sends the whole form; a bad value keeps the form
    open with the reason under it, and nothing is sent.
    """

    DEFAULT_CSS = """
    FormScreen {
        align: center middle;
    }
    FormScreen > Vertical {
        width: 76;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    FormScreen .row {
        height: auto;
        margin-top: 1;
    }
    FormScreen .field-label {
        width: 18;
    }
    FormScreen Input, FormScreen Select {
        width: 1fr;
    }
    FormScreen #error {
        color: $error;
        text-style: bold;
        height: auto;
        margin-top: 1;
    }
    FormScreen #note, FormScreen #hint {
        color: $text-muted;
        height: auto;
    }
    FormScreen Label {
        width: 1fr;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, form: Form) -> None:
        super().__init__()
        self.form = form
        self.error = ""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.form.title, id="title")
            for f in self.form.fields:
                with Horizontal(classes="row"):
                    yield Label(f.label, classes="field-label")
                    if f.choices:
                        yield Select(
                            [(label, value) for value, label in f.choices],
                            value=f.value or f.choices[0][0],
                            allow_blank=False,
                            id=f.name,
                            compact=True,
                        )
                    else:
                        yield Input(f.value, placeholder=f.placeholder, id=f.name, compact=True)
            yield Label("", id="error", markup=False)  # errors quote what was typed
            if self.form.note:
                yield Label(self.form.note, id="note")
            yield Label(self.form.hint, id="hint")

    def on_mount(self) -> None:
        if self.form.start:
            self.query_one(f"#{self.form.start}").focus()
            return
        inputs = self.query(Input)
        if inputs:
            inputs.first().focus()

    def texts(self) -> dict[str, str]:
        """What each field holds now, as text."""
        out: dict[str, str] = {}
        for f in self.form.fields:
            if f.choices:
                out[f.name] = str(self.query_one(f"#{f.name}", Select).value)
            else:
                out[f.name] = self.query_one(f"#{f.name}", Input).value
        return out

    def _show_error(self, message: str) -> None:
        self.error = message
        self.query_one("#error", Label).update(message)

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            args = self.form.parse(self.texts())
        except ValueError as exc:
            self._show_error(str(exc))
            return
        self.dismiss(args)

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        if self.error:  # an error goes away once the form would be accepted
            try:
                self.form.parse(self.texts())
                self._show_error("")
            except ValueError as exc:
                self._show_error(str(exc))

    def action_cancel(self) -> None:
        self.dismiss(None)
