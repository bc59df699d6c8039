"""A plot's Rich Text becomes the Content Textual would make of it, each style converted
once per ANSI palette."""

from __future__ import annotations

from rich.console import Console
from rich.style import Style as RichStyle
from rich.terminal_theme import MONOKAI, SVG_EXPORT_THEME
from rich.text import Text
from textual.content import Content
from textual.style import Style

from optitui.tui import rich_content
from optitui.tui.rich_content import to_content


def plot_like() -> Text:
    text = Text(end="")
    text.append("loss  ", style="bold")
    text.append("━ smoothed", style=RichStyle(color="cyan"))
    text.append("\n")
    for i in range(40):  # runs of a few colours, as a plot's rows are
        text.append("⣿⣀" * 3, style=RichStyle(color="red", dim=i % 3 == 0))
        text.append("   ", style=RichStyle(bgcolor="rgb(10,20,30)"))
        text.append("1.5e-3", style="italic green")
    text.stylize_before(RichStyle(color="white"))
    return text


def test_the_content_is_textuals_own() -> None:
    console = Console()
    text = plot_like()
    ours, textuals = to_content(text, console, None), Content.from_rich_text(text, console)
    assert ours.plain == textuals.plain
    assert ours.spans == textuals.spans
    assert ours == textuals


def test_each_style_is_converted_once_per_palette() -> None:
    console = Console()
    text = plot_like()
    rich_content._CONVERTED.clear()
    to_content(text, console, MONOKAI)
    distinct = len(rich_content._CONVERTED)
    assert distinct < len(text.spans) / 10
    to_content(text, console, MONOKAI)
    assert len(rich_content._CONVERTED) == distinct  # nothing converted again
    other = to_content(text, console, SVG_EXPORT_THEME)
    assert len(rich_content._CONVERTED) == 2 * distinct
    red = next(s for s in other.spans if other.plain[s.start] == "⣿")
    assert red.style == Style.from_rich_style(RichStyle(color="red", dim=True), SVG_EXPORT_THEME)
