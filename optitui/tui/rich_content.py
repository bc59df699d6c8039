"""Rich Text to Textual Content as Textual converts it, each distinct style converted once.

Textual draws a widget's Rich Text by converting it to its own Content, and converts the
style of every span anew (``Style.from_rich_style``): for a plot of a few hundred
coloured runs that was a good part of each repaint. A plot has a handful of distinct
styles, so each is converted once per palette and kept; the Content is the same.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.style import Style as RichStyle
from rich.text import Text
from textual.content import Content, Span
from textual.style import Style

#: (rich style or its name, the ANSI palette) -> Textual's style
_CONVERTED: dict[tuple[Any, int], Style] = {}
_LIMIT = 4096  # distinct styles kept at most (a plot uses tens)


def _style(style: str | RichStyle, console: Console, ansi_theme: Any) -> Style:
    key = (style, id(ansi_theme))
    found = _CONVERTED.get(key)
    if found is None:
        rich = console.get_style(style) if isinstance(style, str) else style
        found = Style.from_rich_style(rich, ansi_theme)
        if len(_CONVERTED) >= _LIMIT:
            _CONVERTED.clear()
        _CONVERTED[key] = found
    return found


def to_content(text: Text, console: Console, ansi_theme: Any) -> Content:
    """What ``Content.from_rich_text(text, console)`` gives under the app's ANSI palette
    ``ansi_theme`` (``App.ansi_theme``)."""
    spans = [Span(start, end, _style(s, console, ansi_theme)) for start, end, s in text.spans]
    content = Content(text.plain, spans)
    if text.style:
        content = content.stylize_before(_style(text.style, console, ansi_theme))
    return content
