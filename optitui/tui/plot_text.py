"""A plotext figure straight to rich Text, without the ANSI round trip.

``plt.build()`` renders the figure's character matrix to a string of ANSI
escapes, and ``Text.from_ansi`` parses it back: together about half the cost
of a frame. Here the matrix plotext builds is read directly and each run of
equally coloured cells becomes one span. Same text, same colours (a test
checks it against the ANSI path); if plotext's internals ever move, the
ANSI path is used instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.ansi import AnsiDecoder
from rich.style import Style
from rich.text import Span, Text

from optitui.tui import plot_layer
from optitui.tui.plot_layer import Canvas, Mark

_STYLES: dict[tuple[Any, Any, Any], Style] = {}
#: colours a series may be drawn in dimmed (plotext's own ``style="dim"`` is not kept)
DIMMABLE = ("cyan", "orange", "green", "magenta", "blue", "red", "yellow", "white", "gray")
_DIM_TAG = (1, 1)  # an RGB no series uses: (1, 1, 2 + index in DIMMABLE) means dimmed


def dimmed(color: str) -> tuple[int, int, int]:
    """A stand-in colour for ``color`` that :func:`figure_text` draws as ``color``, dim."""
    return (*_DIM_TAG, 2 + DIMMABLE.index(color))


def _style(fg: Any, style: Any, bg: Any) -> Style:
    """The rich Style of one plotext colour triple (parsed once from its own ANSI codes)."""
    key = (fg, style, bg)
    found = _STYLES.get(key)
    if found is None and isinstance(fg, tuple) and fg[:2] == _DIM_TAG:
        found = _style(DIMMABLE[fg[2] - 2], style, bg) + Style(dim=True)
        _STYLES[key] = found
    if found is None:
        from plotext._utility import colors_to_ansi

        line = AnsiDecoder().decode_line(colors_to_ansi(fg, style, bg) + "x")
        parsed = line.spans[0].style if line.spans else Style.null()
        found = Style.parse(parsed) if isinstance(parsed, str) else parsed
        _STYLES[key] = found
    return found


def _hashable(c: Any) -> Any:
    return tuple(c) if isinstance(c, list) else c


def figure_text(plt: Any, marks: Sequence[Mark] = ()) -> Text:
    """The figure as Text: plotext's matrix read directly (``plt`` is built here), with
    ``marks`` drawn over its canvas by :mod:`optitui.tui.plot_layer`."""
    direct = bool(marks) and plot_layer.supported(plt, marks)
    if direct:
        plot_layer.reserve_axes(plt, marks)
    else:
        plot_layer.plot_marks(plt, marks)
    try:
        plt._set_sizes()
        plt._build_matrix()
        canvas = Canvas.of(plt)
    except AttributeError:  # a plotext whose internals differ: the slow, public way
        return Text.from_ansi(plt.build())
    if direct:
        plot_layer.draw(canvas, marks)
    return canvas_text(canvas)


def canvas_text(canvas: Canvas) -> Text:
    """A built figure as Text: each run of equally coloured cells one span."""
    markers, fgs, styles, bgs = canvas.marker, canvas.fullground, canvas.style, canvas.background
    pieces: list[str] = []
    spans: list[Span] = []
    at = 0
    for r in range(len(markers) - 1, -1, -1):
        mrow = markers[r]
        keys = list(zip(fgs[r], styles[r], bgs[r], strict=True))
        cuts = [c for c in range(1, len(keys)) if keys[c] != keys[c - 1]]
        start = 0
        for end in (*cuts, len(keys)):
            fg, st, bg = keys[start]
            style = _style(_hashable(fg), st, _hashable(bg))
            if style:
                spans.append(Span(at + start, at + end, style))
            start = end
        pieces.append("".join(mrow))
        at += len(mrow)
        if r:
            pieces.append("\n")
            at += 1
    return Text("".join(pieces), end="", spans=spans)
