"""Which steps the plots show: all, the newest N, or a window the user zoomed and panned to.

A :class:`Span` counts history rows (one per recorded step). A span that follows the
newest rows moves on as the run trains; one panned back into the past stays on the
same rows while new ones arrive, so what the user looks at does not slide away.
Zooming keeps the window's right edge (the newest step, unless panned) where it is.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the fewest rows a zoom goes down to: a plot column per row at most
MIN_ROWS = 16


@dataclass(frozen=True)
class Span:
    """``size`` rows ending at row ``end`` (exclusive); ``size`` None: every row;
    ``end`` None: the newest row, following the run."""

    size: int | None = None
    end: int | None = None

    @property
    def everything(self) -> bool:
        return self.size is None

    @property
    def following(self) -> bool:
        return self.end is None

    def rows(self, length: int) -> tuple[int, int]:
        """The row range [start, stop) in view of a history ``length`` rows long."""
        stop = length if self.end is None else max(0, min(self.end, length))
        if self.size is None:
            return 0, stop
        return max(0, stop - self.size), stop

    def zoomed(self, zoom_in: bool, length: int) -> Span:
        """Half (``zoom_in``) or twice as many rows, the right edge kept; zooming out
        past the whole history shows all of it."""
        start, stop = self.rows(length)
        shown = max(stop - start, 1)
        if zoom_in:
            size = max(MIN_ROWS, shown // 2)
            return Span(size, self.end) if size < shown or self.size is not None else self
        size = shown * 2
        if size >= length:
            return Span()
        return Span(size, self.end if stop - size >= 0 else size)

    def panned(self, older: bool, length: int) -> Span:
        """Half a window to older (``older``) or newer rows; reaching the newest row
        follows the run again. All steps in view: nothing to pan."""
        if self.size is None or self.size >= length:
            return self
        start, stop = self.rows(length)
        step = max(1, (stop - start) // 2)
        end = max(self.size, stop - step) if older else stop + step
        return Span(self.size) if end >= length else Span(self.size, end)


def toggle_last(span: Span, last: int) -> Span:
    """``w``: from all steps to the newest ``last``, from any other window to all."""
    return Span(last) if span.everything else Span()
