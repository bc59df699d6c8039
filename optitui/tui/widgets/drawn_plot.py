"""A plotext plot drawn once per change of what it shows (a range test, a race), not on
every repaint: plotext's log axis is not repeatable, and a frame is not free."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import RenderResult
from textual.geometry import Size
from textual_plotext import PlotextPlot

from optitui.tui.plot_text import figure_text


class DrawnPlot(PlotextPlot):
    """Subclasses draw in :meth:`draw`; :meth:`redraw` says the data changed."""

    DEFAULT_CSS = """
    DrawnPlot {
        height: 1fr;
        min-height: 8;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._dirty = True
        self._drawn_size: Size | None = None
        self._text: Text | None = None

    def redraw(self) -> None:
        self._dirty = True
        self.refresh()

    def render(self) -> RenderResult:
        size = self.size
        if (self._dirty or size != self._drawn_size or self._text is None) and size.area:
            plt = self.plt
            plt.clear_figure()
            self.draw(plt)
            plt.plotsize(size.width, size.height)
            plt._set_size(size.width, size.height)  # see PlotextPlot.render: both are needed
            plt.theme(self._get_plotext_theme_name(self.app.theme))
            self._text = figure_text(plt)  # built once: plotext's log axis is not repeatable
            self._dirty, self._drawn_size = False, size
        return self._text if self._text is not None else Text("")

    def draw(self, plt: Any) -> None:
        raise NotImplementedError
