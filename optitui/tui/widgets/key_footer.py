"""The key bar at the foot of the dashboard: Textual's Footer, its keys styled once.

Textual's FooterKey starts compact and is then bound to its footer's compact (not
compact), so every bound key restyles itself twice as it mounts, and the bar is composed
again whenever the screen's keys change: about 60 style passes before the dashboard's
first frame. Each bound key here starts as its footer is, so the binding changes nothing
and the bar looks as Footer's does (the command palette's key, never bound, stays
compact there too).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class KeyFooter(Footer):
    """A Footer whose keys mount in their final style."""

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, FooterKey) and "compact" in (widget._reactive_connect or {}):
                widget.set_reactive(FooterKey.compact, self.compact)
            yield widget
