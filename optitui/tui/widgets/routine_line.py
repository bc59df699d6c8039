"""One line over the event log: the routine checkpoint saves, counted (they would
otherwise fill the log), and the log's filter when it hides some lines."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget

from optitui.store.reader import EventRow
from optitui.tui.routine import SaveTally, is_routine, kept


class RoutineLine(Widget):
    """Laid out like a log line (step, kind, message); hidden while it has nothing to say."""

    DEFAULT_CSS = """
    RoutineLine {
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        display: none;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tally = SaveTally()
        self.keep = ""  # what the checkpoint policy keeps
        self.log_filter = "all"

    def add_events(self, events: tuple[EventRow, ...] | list[EventRow]) -> None:
        before = self.tally.saved
        for e in events:
            if is_routine(e):
                self.tally.add(e)
        if self.tally.saved != before:
            self._show()

    def set_policy(self, meta: dict[str, Any]) -> None:
        """The checkpoint policy from the job's controls: what it keeps on disk."""
        controls = meta.get("controls")
        keep = kept(controls.get("checkpoints") if isinstance(controls, dict) else None)
        if keep != self.keep:
            self.keep = keep
            self._show()

    def set_filter(self, log_filter: str) -> None:
        self.log_filter = log_filter
        self._show()

    def line(self, width: int = 0) -> Text:
        """The line in ``width`` cells (0: as long as it is); the filter's tag stays
        whole at the right, the saves' summary gives way."""
        t = Text(no_wrap=True, overflow="ellipsis", end="")
        if self.tally.saved:
            t.append(f"{self.tally.last_step:>8} ", "dim")
            t.append(f"{'checkpoint':<11}")
            t.append(self.tally.text(self.keep))
        if self.log_filter == "all":
            return t
        tag = Text(f" {self.log_filter} only · v: all ", "reverse", end="")
        if width:
            t.truncate(max(width - tag.cell_len - 1, 0), overflow="ellipsis")
            t.pad_right(width - tag.cell_len - t.cell_len)
        else:
            t.append("  ")
        t.append_text(tag)
        return t

    def render(self) -> Text:
        return self.line(self.size.width)

    def _show(self) -> None:
        self.display = bool(self.tally.saved) or self.log_filter != "all"
        self.refresh()
