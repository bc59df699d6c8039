"""The row of the main screen's plots, which says when its height changes: the metric
pinned under the loss plot is drawn only where the loss plot keeps room of its own."""

from __future__ import annotations

from textual import events
from textual.containers import Horizontal
from textual.message import Message


class PlotRow(Horizontal):
    """A Horizontal that posts :class:`PlotRow.Resized` (a Resize does not bubble)."""

    class Resized(Message):
        def __init__(self, height: int) -> None:
            super().__init__()
            self.height = height

    def on_resize(self, event: events.Resize) -> None:
        self.post_message(self.Resized(event.size.height))
