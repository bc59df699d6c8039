"""What became of the changes this viewer sent: pending, applied at a step, or rejected."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from optitui.tui.steering import Change

STYLES = {"pending": "yellow", "applied": "green", "rejected": "bold red", "unanswered": "red"}
ICONS = {"pending": "⋯", "applied": "✓", "rejected": "✗", "unanswered": "?"}


class CommandStatus(Static):
    """The last few commands, newest last; pending ones stay until the job answers."""

    DEFAULT_CSS = """
    CommandStatus {
        height: auto;
        max-height: 3;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None, lines: int = 2) -> None:
        super().__init__(id=id)
        self.lines = lines
        self.shown: list[Change] = []

    def show(self, changes: list[Change], all_groups: bool) -> None:
        self.shown = changes[-self.lines :]
        t = Text(no_wrap=True, overflow="ellipsis")
        if not self.shown:
            target = "all groups" if all_groups else "the selected group"
            t.append(f"keys act on {target}; changes show here until the job answers", "dim")
        for i, c in enumerate(self.shown):
            if i:
                t.append("\n")
            t.append(f"{ICONS[c.state]} ", STYLES[c.state])
            t.append(c.describe(), STYLES[c.state] if c.state != "applied" else "")
        self.update(t)
