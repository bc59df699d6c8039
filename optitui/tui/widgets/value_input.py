"""A text box in which ctrl+u empties the whole value, wherever the cursor is."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Input


class ValueInput(Input):
    """Input's own ctrl+u deletes left of the cursor; a value box is cleared whole.

    Bound on the box itself (not as a priority key on the screen), so a ctrl+u
    typed right after ↑↓ acts after them, on the value they put there."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+u", "clear_value", "Clear", show=False),
    ]

    def action_clear_value(self) -> None:
        self.value = ""
