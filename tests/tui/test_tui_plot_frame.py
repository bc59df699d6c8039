"""A plot's frame (axes, ticks, labels) is built by plotext once and reused while it would
be built the same: every reused frame equals a freshly built figure, cell by cell."""

from __future__ import annotations

import math

from plotext._matrix import matrix_class
from rich.text import Text
from textual_plotext.plot import Plot

from optitui.tui import fmt, plot_layer
from optitui.tui.plot_frame import Axes, FrameCache, _set_matrices, clear_figure
from optitui.tui.plot_layer import Mark
from optitui.tui.plot_text import figure_text

SIZE = (120, 30)
THEME = "pro"


def new_figure() -> Plot:
    p = Plot()
    p.plotsize(*SIZE)
    p._set_size(*SIZE)
    p.theme(THEME)
    return p


def axes_for(x_hi: float, y_lo: float = 0.0, y_hi: float = 2.0) -> Axes:
    """The axes a history plot asks for: six whole-step x ticks and three on y."""
    xt = tuple(x_hi * i / 5 for i in range(6))
    yt = tuple(y_lo + (y_hi - y_lo) * i / 2 for i in range(3))
    return Axes(
        (0.0, x_hi),
        (y_lo, y_hi),
        (xt, tuple(fmt.count(round(t)) for t in xt)),
        (yt, tuple(f"{v:.3g}" for v in yt)),
    )


def marks_for(x_hi: float) -> list[Mark]:
    xs = [x_hi * i / 100 for i in range(1, 101)]
    band = [y for i in range(1, 101) for y in (0.2 + 1 / i, 0.4 + 1.5 / i)]
    return [
        Mark([x for x in xs for _ in range(2)], band, "gray"),
        Mark(xs[::2], [0.3 + 1.2 / i for i in range(1, 101, 2)], "cyan"),
        Mark(xs[::25], [0.05] * 4, (95, 135, 215), "◆", line=False),
    ]


def fresh(axes: Axes, marks: list[Mark]) -> Text:
    """The same figure as plotext alone draws it."""
    p = new_figure()
    axes.apply(p)
    plot_layer.plot_marks(p, marks)
    return figure_text(p)


def same(a: Text, b: Text) -> None:
    assert a.plain == b.plain
    assert [(s.start, s.end, str(s.style)) for s in a.spans] == [
        (s.start, s.end, str(s.style)) for s in b.spans
    ]


def test_a_growing_run_reuses_its_frame_and_draws_what_plotext_draws() -> None:
    cache = FrameCache()
    # a live run a few steps at a time: the ticks stay on their cells, labels the same
    for x_hi in (10_000.0, 10_001.0, 10_002.0, 10_003.0, 10_004.0):
        axes, marks = axes_for(x_hi), marks_for(x_hi)
        same(cache.text(SIZE, THEME, axes, marks, new_figure), fresh(axes, marks))
    assert cache.built == 1
    # a label rounds differently (6k -> 6.02k): built again
    axes, marks = axes_for(10_030.0), marks_for(10_030.0)
    same(cache.text(SIZE, THEME, axes, marks, new_figure), fresh(axes, marks))
    assert cache.built == 2
    # the y range moves far enough for its ticks to change: built again
    axes = axes_for(10_030.0, y_lo=-0.5, y_hi=2.5)
    same(cache.text(SIZE, THEME, axes, marks, new_figure), fresh(axes, marks))
    assert cache.built == 3


def test_every_frame_equals_a_fresh_one_as_the_axes_drift() -> None:
    """Ranges that drift a little each frame under ticks that keep their labels: whether
    the frame is reused or built, the figure is the one plotext draws (a frame reused
    with a tick moved to another row would differ)."""
    cache = FrameCache()
    for i in range(40):
        x_hi = 5_000.0 + 3.0 * i
        drift = 0.02 * math.sin(i / 3)
        axes = axes_for(x_hi)
        axes = Axes(
            axes.xlim, (drift, 2.0 + drift), axes.xticks, ((0.5, 1.0, 1.5), ("a", "b", "c"))
        )
        marks = marks_for(x_hi)
        same(cache.text(SIZE, THEME, axes, marks, new_figure), fresh(axes, marks))
    assert 2 < cache.built < 40  # some reused, some built


def test_a_single_step_leaves_the_x_axis_to_plotext() -> None:
    cache = FrameCache()
    axes = Axes(None, (0.0, 2.0), None, ((0.0, 1.0, 2.0), ("0", "1", "2")))
    marks = [Mark([7.0], [1.0], "cyan")]
    for _ in range(2):
        same(cache.text(SIZE, THEME, axes, marks, new_figure), fresh(axes, marks))
    assert cache.built == 2  # never reused: plotext chooses the x ticks


def test_quick_matrices_are_plotexts_blank_matrices() -> None:
    for cols, rows, area in ((0, 0, (0, 0, 0, 0)), (40, 12, (9, 39, 2, 11)), (7, 3, (0, 9, 1, 5))):
        theirs, ours = matrix_class(), matrix_class()
        for m in (theirs, ours):
            m.set_size(cols, rows)
            m.set_axes_color((1, 2, 3))
            m.set_canvas_area(*area)
            m.set_canvas_color("black")
        theirs.set_matrices()
        _set_matrices(ours)
        assert (ours.marker, ours.fullground, ours.background, ours.style) == (
            theirs.marker,
            theirs.fullground,
            theirs.background,
            theirs.style,
        )


def test_a_figure_cleared_without_plotexts_deep_copy_draws_the_same() -> None:
    """clear_figure skips plotext's deep copy of a just-made monitor (a third of its cost):
    the figure it leaves draws cell for cell what plotext's own clear_figure leaves, and
    plotext's copy is its own again afterwards."""
    from plotext._monitor import monitor_class

    ours, theirs = new_figure(), new_figure()
    copies: list[object] = []
    own = monitor_class.copy
    monitor_class.copy = lambda self: copies.append(self) or own(self)  # type: ignore[method-assign]
    try:
        clear_figure(ours)
        assert copies == []
        theirs.clear_figure()
        assert len(copies) == 1
    finally:
        monitor_class.copy = own  # type: ignore[method-assign]
    assert monitor_class.copy is own
    axes, marks = axes_for(5000.0), marks_for(5000.0)
    for p in (ours, theirs):
        p.plotsize(*SIZE)
        p._set_size(*SIZE)
        p.theme(THEME)
        axes.apply(p)
        plot_layer.plot_marks(p, marks)
    same(figure_text(ours), figure_text(theirs))
