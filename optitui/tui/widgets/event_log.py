"""The event log: the job's events (commands with outcome and step, warnings,
errors), the tail of its captured output, and the viewer's own notes."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual import events

from optitui.store.reader import EventRow
from optitui.tui import fmt
from optitui.tui.lazy_attrs import import_pretty
from optitui.tui.routine import FILTERS, is_routine, shown

import_pretty()  # before RichLog imports rich.pretty: attrs is loaded only if rich needs it
from textual.widgets import RichLog  # noqa: E402

KIND_STYLES = {
    "command": "cyan",
    "warning": "yellow",
    "error": "bold red",
    "info": "green",
    "output": "dim",
}


def readable(event: EventRow, names: list[str]) -> str:
    """An event's first line as the dashboard words it: groups by the names the table
    shows (``group=head``, not ``group=1``) and command ids in their short form."""
    message = event.message.splitlines()[0] if event.message else ""
    args = (event.data or {}).get("args")
    group = args.get("group") if isinstance(args, dict) else None
    if not isinstance(group, int) or isinstance(group, bool) or not 0 <= group < len(names):
        return fmt.shorten_ids(message)
    if names[group] != f"group {group}":  # an unnamed group keeps group=N
        message = message.replace(f" group={group}", f" group={names[group]}", 1)
    return fmt.shorten_ids(message)


#: the cells of a line's step and kind, before its message
HEAD_CELLS = 20
#: the most rows one event takes: a longer message ends in an ellipsis
MAX_ROWS = 3
#: below this width a message is not wrapped under its head (it would be a few cells wide)
WRAP_FROM = HEAD_CELLS + 20


class EventLog(RichLog):
    """A bounded, scrolling log. Lines carry steps, never wall times (stable snapshots).

    Routine checkpoint saves are left out (a :class:`RoutineLine` counts them). The
    lines are kept with their kind, so a filter (all / commands / warnings) redraws the
    log from them at once. A message wider than the log wraps under itself (up to
    :data:`MAX_ROWS` rows, then an ellipsis), laid out again when the width changes:
    cut at the edge, the words that say what happened are the ones lost.
    """

    DEFAULT_CSS = """
    EventLog {
        height: 1fr;
        min-height: 3;
    }
    """

    def __init__(self, *, id: str | None = None, max_lines: int = 1000) -> None:
        super().__init__(id=id, max_lines=max_lines, wrap=False, markup=False, auto_scroll=True)
        self.can_focus = False
        self.count = 0
        self.log_filter = "all"
        # (kind, head, message) of each line
        self._kept: deque[tuple[str, Text, Text]] = deque(maxlen=max_lines)
        self._laid_out = 0  # the width the lines were laid out for (0: none yet)

    def _keep(self, kind: str, head: Text, message: Text) -> None:
        self._kept.append((kind, head, message))
        if shown(kind, self.log_filter):
            self._write(head, message)
        self.count += 1

    def _write(self, head: Text, message: Text) -> None:
        width = self.scrollable_content_region.width
        self._laid_out = width
        if width < WRAP_FROM or message.cell_len <= width - head.cell_len:
            self.write(head + message)  # one row (cut at the edge of a very narrow log)
            return
        rows = list(message.wrap(self.app.console, width - head.cell_len, overflow="fold"))
        if len(rows) > MAX_ROWS:
            last = rows[MAX_ROWS - 1] + Text(" ") + rows[MAX_ROWS]
            last.truncate(width - head.cell_len, overflow="ellipsis")
            rows = [*rows[: MAX_ROWS - 1], last]
        indent = Text(" " * head.cell_len)
        for i, row in enumerate(rows):
            self.write((head if i == 0 else indent) + row)

    def on_resize(self, event: events.Resize) -> None:
        super().on_resize(event)
        if self.scrollable_content_region.width != self._laid_out and self._kept:
            self._redraw()

    def _redraw(self) -> None:
        self.clear()
        for kind, head, message in self._kept:
            if shown(kind, self.log_filter):
                self._write(head, message)

    def _line(self, step: str, kind: str, message: str, style: str, alarm: bool = False) -> None:
        head = Text(no_wrap=True)
        head.append(f"{step:>8} ", "dim")
        head.append(f"{kind[:10]:<11}", style)
        body = Text(message, style if kind in ("error", "viewer") else "")
        self._keep("error" if alarm else kind, head, body)

    def add_events(
        self, events: tuple[EventRow, ...] | list[EventRow], names: list[str] | None = None
    ) -> None:
        """The job's events but routine saves; ``names`` are the groups' names, used
        instead of indexes."""
        for e in events:
            if not is_routine(e):
                message = readable(e, names or [])
                self._line(str(e.step), e.kind, message, KIND_STYLES.get(e.kind, ""))

    def add_output(self, lines: tuple[str, ...] | list[str]) -> None:
        for line in lines:
            head = Text(no_wrap=True)
            head.append(f"{'':>8} ", "dim")
            head.append(f"{'out':<11}", "dim")
            self._keep("output", head, Text(line, "dim"))

    def note(self, message: str, style: str = "magenta") -> None:
        """A line from the viewer itself (job exit, read errors); one in red is an alarm,
        kept by the warnings filter."""
        self._line("", "viewer", message, style, alarm="red" in style)

    def shown_lines(self) -> list[str]:
        """The lines the filter shows, each whole (as one row at any width)."""
        return [
            (head + message).plain
            for kind, head, message in self._kept
            if shown(kind, self.log_filter)
        ]

    def next_filter(self) -> str:
        """Show the next filter's lines (all, commands, warnings); returns its name."""
        self.log_filter = FILTERS[(FILTERS.index(self.log_filter) + 1) % len(FILTERS)]
        self._redraw()
        return self.log_filter
