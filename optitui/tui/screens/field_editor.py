"""Editing one hyperparameter of a group: checked as you type, sent only when valid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from optitui.store.commands import MAX_STEPS
from optitui.store.fields import FieldSpec
from optitui.tui import fmt
from optitui.tui.widgets.value_input import ValueInput


@dataclass(frozen=True)
class Edit:
    """One field's new value, applied at once (``ramp`` None) or over ``ramp`` steps."""

    field: str
    value: Any
    ramp: int | None = None


def parse_ramp(text: str) -> int | None:
    """The "over N steps" box: blank means at once."""
    text = text.strip()
    if not text:
        return None
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"over N steps: {text!r} is not a whole number") from None
    if not 1 <= n <= MAX_STEPS:
        raise ValueError(f"over N steps: got {n}; allowed: 1 to {MAX_STEPS:,}, or blank")
    return n


class FieldEditor(ModalScreen[Edit | None]):
    """Pick a field (↑↓), type a value, Enter sends; the job's own rules check it first.

    Dismisses with an :class:`Edit` (value already parsed and normalised), or
    None when cancelled. A number may be ramped in linearly over N steps
    instead of at once. Invalid input keeps the dialog open with the error
    shown inline, and nothing is sent.
    """

    DEFAULT_CSS = """
    FieldEditor {
        align: center middle;
    }
    FieldEditor > Vertical {
        width: 72;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    FieldEditor OptionList {
        height: auto;
        max-height: 8;
    }
    FieldEditor #error {
        color: $error;
        text-style: bold;
        height: auto;
    }
    FieldEditor #allowed, FieldEditor #hint, FieldEditor #schedule {
        color: $text-muted;
    }
    FieldEditor Label {
        width: 1fr;
    }
    FieldEditor Horizontal {
        height: auto;
    }
    FieldEditor #value {
        width: 1fr;
    }
    FieldEditor #ramp-label {
        width: auto;
        padding: 1 1 0 1;
    }
    FieldEditor #ramp {
        width: 16;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("up", "move(-1)", "Previous field", show=False),
        Binding("down", "move(1)", "Next field", show=False),
    ]

    def __init__(
        self, group: dict[str, Any], target: str, field: str = "lr", schedule: str | None = None
    ) -> None:
        super().__init__()
        self.target = target
        #: what an lr edit becomes on this group (a multiplier on a schedule), if not the lr
        self.schedule = schedule
        self.values: dict[str, Any] = dict(group.get("values") or {})
        self.specs: dict[str, FieldSpec] = {}
        for name, spec in (group.get("fields") or {}).items():
            parsed = FieldSpec.from_json(spec)
            if parsed.editable:
                self.specs[name] = parsed
        names = list(self.specs)
        self.field = field if field in self.specs else (names[0] if names else "")
        self.error = ""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Edit a hyperparameter of {self.target}", id="title")
            yield OptionList(
                *[
                    Option(f"{name:<16} {fmt.value(self.values.get(name))}", id=name)
                    for name in self.specs
                ],
                id="fields",
            )
            with Horizontal():
                yield ValueInput(id="value", placeholder="new value")
                yield Label("over", id="ramp-label")
                yield ValueInput(id="ramp", placeholder="N steps")
            yield Label("", id="error")
            yield Label("", id="allowed")
            yield Label("", id="schedule")
            yield Label(
                "Enter sends · Esc cancels · ↑↓ field · Tab: ramp over N steps (blank: at once)",
                id="hint",
            )

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.can_focus = False
        if self.field:
            options.highlighted = list(self.specs).index(self.field)
        self._select(self.field)
        self.query_one("#value", Input).focus()

    def _select(self, name: str) -> None:
        self.field = name
        spec = self.specs.get(name)
        inp = self.query_one("#value", Input)
        inp.value = fmt.editable_text(self.values.get(name)) if spec else ""
        inp.cursor_position = len(inp.value)
        self.query_one("#allowed", Label).update(f"allowed: {spec.allowed()}" if spec else "")
        note = self.schedule if name == "lr" else None
        self.query_one("#schedule", Label).update(note or "")
        self.query_one("#schedule", Label).display = note is not None
        self._show_error("")

    def _show_error(self, message: str) -> None:
        self.error = message
        self.query_one("#error", Label).update(message)

    def action_move(self, delta: int) -> None:
        names = list(self.specs)
        if not names:
            return
        i = (names.index(self.field) + delta) % len(names)
        self.query_one(OptionList).highlighted = i
        self._select(names[i])

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self._select(event.option.id)
            self.query_one("#value", Input).focus()

    def check(self, text: str) -> Any:
        """The parsed value; raises ValueError with the message to show."""
        spec = self.specs.get(self.field)
        if spec is None:
            raise ValueError("this group has no editable fields")
        if not text.strip():
            raise ValueError(f"{self.field}: enter a value; allowed: {spec.allowed()}")
        return spec.parse(text)

    def edit(self) -> Edit:
        """What the dialog would send now; raises ValueError with the message to show."""
        value = self.check(self.query_one("#value", Input).value)
        ramp = parse_ramp(self.query_one("#ramp", Input).value)
        if ramp is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{self.field}: only a single number can be ramped; clear the steps")
        return Edit(self.field, value, ramp)

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        if not self.error:
            return
        try:  # once an error shows, it goes away as soon as the text is valid
            self.edit()
            self._show_error("")
        except ValueError as exc:
            self._show_error(str(exc))

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        try:
            edit = self.edit()
        except ValueError as exc:
            self._show_error(str(exc))
            return
        self.dismiss(edit)

    def action_cancel(self) -> None:
        self.dismiss(None)
