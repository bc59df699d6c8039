"""The key bar at the foot of the dashboard and its screens: Textual's Footer, its keys
styled once, and the command palette's key left out on a narrow terminal.

Textual's FooterKey starts compact and is then bound to its footer's compact (not
compact), so every bound key restyles itself twice as it mounts, and the bar is composed
again whenever the screen's keys change: about 60 style passes before the dashboard's
first frame. Each bound key here starts as its footer is, so the binding changes nothing
and the bar looks as Footer's does (the command palette's key, never bound, stays
compact there too).

Below :data:`PALETTE_KEY_FROM` columns the palette's key (ctrl+p, listed in help) gives
its room to the screen's own keys, which would otherwise be cut at the bar's end.
"""

from __future__ import annotations

from typing import Any

from textual import events
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

try:  # Textual's own key widget (private): without it the bar is Footer's as it is
    from textual.widgets._footer import FooterKey
except ImportError:  # pragma: no cover - another Textual layout
    FooterKey = None  # type: ignore[assignment,misc]

#: the narrowest bar that shows the command palette's key (the dashboard's wide layout
#: starts there too)
PALETTE_KEY_FROM = 100


class KeyFooter(Footer):
    """A Footer whose keys mount in their final style."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Footer mounts empty and composes its keys once the screen has sent its bindings;
        # each change recomposes after the next refresh, removing the keys before it
        # mounts them again: until that is done, a frame can show an empty bar
        self._recompose_due = True
        self._recomposing = False

    @property
    def settled(self) -> bool:
        """Whether the bar shows the screen's keys as they are: no recompose due or under
        way (a screenshot taken before then may catch the bar empty)."""
        return not (self._recompose_due or self._recomposing)

    def bindings_changed(self, screen: Screen[Any]) -> None:
        super().bindings_changed(screen)
        # Footer recomposes on these terms only (its keys change with the screen's)
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            self._recompose_due = True

    async def recompose(self) -> None:
        self._recompose_due = False
        self._recomposing = True
        try:
            await super().recompose()
        finally:
            self._recomposing = False

    def on_resize(self, event: events.Resize) -> None:
        show = event.size.width >= PALETTE_KEY_FROM
        if show != self.show_command_palette:
            self.show_command_palette = show
            self._recompose_due = True
            self.call_after_refresh(self.recompose)  # the flag alone redraws nothing

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if FooterKey is not None and isinstance(widget, FooterKey) and _bound(widget):
                widget.set_reactive(FooterKey.compact, self.compact)
            yield widget


def _bound(key: Any) -> bool:
    """Whether ``key`` is bound to its footer's compact (private to Textual: a version
    that keeps it elsewhere leaves the key to restyle itself, as Footer's do)."""
    return "compact" in (getattr(key, "_reactive_connect", None) or {})
