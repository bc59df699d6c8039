"""Every marker on the plots, with its step and what happened (the strip only shows glyphs)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from optitui.tui.markers import CATEGORIES, Marker


def line(m: Marker) -> Text:
    """One marker: step, glyph and category, and the event's message."""
    c = m.category
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"{m.step:>9,}  ", "dim")
    t.append(c.glyph, c.color)
    t.append(f" {c.name:<8} ")
    t.append(m.message or m.label)
    return t


class MarkersScreen(ModalScreen[None]):
    """Latest step first; Esc, q or M closes."""

    DEFAULT_CSS = """
    MarkersScreen {
        align: center middle;
    }
    MarkersScreen > Vertical {
        width: 100;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    MarkersScreen OptionList {
        height: auto;
        max-height: 1fr;
        border: none;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    MarkersScreen #key, MarkersScreen #hint {
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,M", "close", "Close")]

    def __init__(self, markers: list[Marker]) -> None:
        super().__init__()
        # the latest step first; of one step, the one that came last first
        self.markers = sorted(reversed(markers), key=lambda m: -m.step)

    def compose(self) -> ComposeResult:
        with Vertical():
            n = len(self.markers)
            yield Label(f"Markers on the plots: {n} (latest step first)", id="title")
            key = Text()
            for c in CATEGORIES:
                key.append(c.glyph, c.color)
                key.append(f" {c.name}  ")
            yield Label(key, id="key")
            if self.markers:
                yield OptionList(*[Option(line(m)) for m in self.markers], id="markers")
            else:
                yield Label("none yet: changes, checkpoints, range tests and problems show here")
            yield Label("↑↓ scroll · Esc closes", id="hint")

    def on_mount(self) -> None:
        if self.markers:
            self.query_one(OptionList).focus()

    def action_close(self) -> None:
        self.dismiss(None)
