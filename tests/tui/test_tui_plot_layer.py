"""The plots' data drawn straight into braille cells (optitui.tui.plot_layer) is what
plotext draws for the same data, cell by cell and colour by colour."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from long_run import STEPS, write_long_store
from plotext import _utility as ut
from rich.text import Text
from textual_plotext.plot import Plot
from tui_support import fixed_settings, pilot_test, wait_until

from optitui.tui import plot_layer
from optitui.tui.app import build_app
from optitui.tui.overlay_feed import overlay_run
from optitui.tui.plot_layer import Mark
from optitui.tui.plot_text import dimmed, figure_text
from optitui.tui.widgets.history_plot import HistoryPlot


def plotext_cells(px: list[int], py: list[int]) -> dict[tuple[int, int], str]:
    """plotext's own braille line through pixels (px, py): its cells and glyphs."""
    x, y, *_ = ut.get_lines(px, py, ["braille"] * len(px))
    x, y, _ = ut.brush(x, y, ["braille"] * len(x))
    cx, cy, codes = ut.hd_group(x, y, [2] * len(x), [4] * len(x))
    return {(a, b): ut.get_hd_marker(c) for a, b, c in zip(cx, cy, codes, strict=True)}


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.integers(-12, 80), st.integers(-12, 240)), min_size=1, max_size=10))
def test_braille_cells_are_the_dots_plotext_draws(points: list[tuple[int, int]]) -> None:
    px, py = [p[0] for p in points], [p[1] for p in points]
    mine = {k: plot_layer._GLYPH[v] for k, v in plot_layer.braille_cells(px, py).items()}
    assert mine == plotext_cells(px, py)


@settings(max_examples=150, deadline=None)
@given(
    st.floats(-1e6, 1e6),
    st.floats(1e-9, 1e6),
    st.integers(1, 800),
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20),
)
def test_cells_are_plotexts_rounding(lo: float, span: float, bins: int, at: list[float]) -> None:
    values = [lo + span * a for a in at] + [lo, lo + span, lo + span / 2]
    assert plot_layer.to_cells(values, [lo, lo + span], bins) == ut.get_matrix_data(
        values, [lo, lo + span], bins
    )


def test_a_tall_band_is_runs_of_whole_cells() -> None:
    # a min/max band: one column's min to max, then down to the next column's min
    px = [0, 0, 2, 2, 4, 4]
    py = [3, 390, 1, 377, 5, 399]
    mine = {k: plot_layer._GLYPH[v] for k, v in plot_layer.braille_cells(px, py).items()}
    assert mine == plotext_cells(px, py)
    # the first column's span, and the line down to the next one's min crossing into
    # the cell's right half half way down
    assert mine[(0, 75)] == "⡇" and mine[(0, 25)] == "⣿"


def figure(size: tuple[int, int], xlim: tuple[float, float], ylim: tuple[float, float]) -> Plot:
    p = Plot()
    p.xlim(*xlim)
    p.ylim(*ylim)
    p.xticks([xlim[0], (xlim[0] + xlim[1]) / 2, xlim[1]], ["lo", "mid", "hi"])
    p.yticks([ylim[0], ylim[1]], [f"{ylim[0]:.3g}", f"{ylim[1]:.3g}"])
    p.plotsize(*size)
    p._set_size(*size)
    p.theme("pro")
    return p


def same_text(a: Text, b: Text) -> None:
    assert a.plain == b.plain
    assert [(s.start, s.end, str(s.style)) for s in a.spans] == [
        (s.start, s.end, str(s.style)) for s in b.spans
    ]


def band(n: int, lo: float, hi: float, log: bool) -> tuple[list[float], list[float]]:
    """A noisy min/max band over x 1..n as the loss plot draws it: a low and a high per
    column at the column's last x (log10 of the values on a log axis)."""
    xs: list[float] = []
    ys: list[float] = []
    for i in range(1, n + 1):
        base = hi * math.exp(-i / (n / 4)) + lo
        for y in (base * (1 - 0.4 * (i * 7919 % 13) / 13), base * (1 + (i * 104729 % 17) / 17)):
            xs.append(float(i * 10))
            ys.append(math.log10(y) if log else y)
    return xs, ys


SHAPES = {
    "linear": ((160, 47), False, (10.0, 1500.0)),
    "log-y": ((160, 47), True, (10.0, 1500.0)),
    "zoomed": ((120, 30), False, (600.0, 800.0)),  # points beyond the window both sides
    "narrow": ((40, 12), True, (10.0, 1500.0)),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_layer_draws_what_plotext_draws(shape: str) -> None:
    size, log, xlim = SHAPES[shape]
    xs, ys = band(150, 0.01, 5.0, log)
    smooth = [sum(ys[max(0, i - 8) : i + 1]) / (i + 1 - max(0, i - 8)) for i in range(len(ys))]
    lo, hi = min(ys), max(ys)
    marks = [
        Mark(xs, ys, "gray"),
        Mark(xs[::4], smooth[::4], "cyan"),
        Mark(xs[::3], [y + 0.01 for y in smooth[::3]], dimmed("green")),
        Mark(xs[::30], smooth[::30], "green", "•", line=False),
        Mark([xs[5], xs[40]], [hi, hi], (255, 95, 135), "↑", line=False),
        Mark([200.0, 900.0], [lo, lo], (95, 135, 215), "◆", line=False),
        Mark([xs[10]], [ys[10]], "orange"),  # a line of one point
    ]
    pad = (hi - lo) * 0.02
    direct = figure_text(figure(size, xlim, (lo - pad, hi + pad)), marks)
    plotted = figure(size, xlim, (lo - pad, hi + pad))
    plot_layer.plot_marks(plotted, marks)
    same_text(direct, figure_text(plotted))
    assert sum("\u2801" <= c <= "\u28ff" for c in direct.plain) > 50  # a band was drawn


def test_marks_the_layer_cannot_draw_go_through_plotext() -> None:
    marks = [Mark([1.0, 5.0, 9.0], [1.0, 3.0, 2.0], "cyan", "dot")]  # a line of dots
    p = figure((60, 20), (1.0, 9.0), (0.0, 4.0))
    assert not plot_layer.supported(p, marks)
    drawn = figure_text(p, marks)
    plotted = figure((60, 20), (1.0, 9.0), (0.0, 4.0))
    plot_layer.plot_marks(plotted, marks)
    same_text(drawn, figure_text(plotted))


def plot_texts(plots: tuple[HistoryPlot, ...]) -> list[Text]:
    out = []
    for p in plots:
        p.redraw(force=True)
        text = p._text
        assert text is not None
        out.append(text.copy())
    return out


@pilot_test
async def test_the_dashboard_plots_are_drawn_as_plotext_draws_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 20k-step run with a spike (clipped, log-y by itself) and another run overlaid:
    whole history, zoomed and panned, linear, by time; both plots, at two sizes."""
    run = write_long_store(tmp_path / "runs" / "regression-long").root
    other = tmp_path / "runs" / "regression-again"
    shutil.copytree(run, other)
    app = build_app(run, settings=fixed_settings(), overlays=[overlay_run(other)])
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.dashboard
        await wait_until(
            pilot,
            lambda: (
                screen.overlay_lengths() == (STEPS,)
                and all(p.shows(STEPS, (STEPS,)) for p in screen.plots)
            ),
            timeout=30.0,
        )
        states: list[tuple[str, Any]] = [
            ("whole history, log-y by itself", lambda: None),
            ("zoomed in", lambda: [screen.action_zoom(True) for _ in range(3)]),
            ("panned back", lambda: screen.action_pan(True)),
            ("linear", screen.action_toggle_log),
            ("by time", screen.action_toggle_x),
            ("zoomed out", lambda: [screen.action_zoom(False) for _ in range(2)]),
        ]
        for size in ((160, 48), (100, 30)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            for what, act in states:
                act()
                await pilot.pause()
                direct = plot_texts(screen.plots)
                with monkeypatch.context() as m:  # plotext draws all: frame and data
                    m.setattr(plot_layer, "drawable", lambda marks: False)
                    plotted = plot_texts(screen.plots)
                for d, p in zip(direct, plotted, strict=True):
                    assert "⠀" not in d.plain  # no empty braille cell
                    assert d.plain == p.plain, (size, what)
                    same_text(d, p)
