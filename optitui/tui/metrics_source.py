"""What the metrics screens read from the dashboard, and how they name the steps in view."""

from __future__ import annotations

from typing import Protocol

from optitui.tui.history import HistoryView
from optitui.tui.markers import Marker
from optitui.tui.overlay import Overlay
from optitui.tui.span import Span


class MetricsSource(Protocol):
    """What the metrics screens read from the dashboard."""

    markers: list[Marker]
    pinned: str | None

    def metrics_view(self) -> HistoryView: ...

    def shown_overlays(self) -> tuple[Overlay, ...]: ...

    def pin_metric(self, name: str | None) -> None: ...

    def pinned_fits(self) -> bool:
        """Whether the main screen has room for the pinned chart now."""
        ...

    def want_metrics(self) -> None: ...

    def steered_group_names(self) -> list[str]: ...


def window_words(span: Span) -> str:
    if span.everything:
        return "all steps"
    return f"last {span.size} steps" if span.following else "a window"
