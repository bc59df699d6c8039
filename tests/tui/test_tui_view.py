"""What the plots show of a long run: the window of steps (zoom, pan) and a y range
that follows the data that matters (robust to spikes, log when it spans decades)."""

from __future__ import annotations

import math

from optitui.tui import y_range
from optitui.tui.span import MIN_ROWS, Span, toggle_last


def test_zoom_keeps_the_newest_step_and_pan_moves_by_half_a_window() -> None:
    n = 20_000
    span = Span().zoomed(True, n)
    assert span.rows(n) == (10_000, 20_000) and span.following
    span = span.zoomed(True, n).zoomed(True, n)
    assert span.rows(n) == (17_500, 20_000)
    older = span.panned(True, n)
    assert older.rows(n) == (16_250, 18_750) and not older.following
    assert older.rows(n + 500) == (16_250, 18_750)  # a panned window stays as rows arrive
    # zooming out keeps the right edge; past the whole history it shows all of it
    assert older.zoomed(False, n).rows(n) == (13_750, 18_750)
    assert older.zoomed(False, n).zoomed(False, n).zoomed(False, n) == Span()
    # back to the newest: following again
    assert older.panned(False, n) == Span(2_500)
    assert Span(2_500).panned(False, n) == Span(2_500)  # nothing newer
    # the first rows: pan stops there
    first = Span(2_500, 2_500)
    assert first.panned(True, n) == first
    assert first.zoomed(False, n).rows(n) == (0, 5_000)


def test_zoom_stops_at_a_few_rows_and_all_steps_cannot_pan() -> None:
    span = Span(MIN_ROWS)
    assert span.zoomed(True, 1000) == span
    assert Span().panned(True, 1000) == Span()
    assert Span(2000).panned(True, 600) == Span(2000)  # the window holds every row
    assert toggle_last(Span(), 2000) == Span(2000)
    assert toggle_last(Span(500, 900), 2000) == Span()


def test_the_range_leaves_out_a_spike_but_keeps_the_newest_lows() -> None:
    late = [0.01 + 0.002 * math.sin(i) for i in range(200)]
    band = [50.0, 40.0, *late, 0.004]  # a spike at the start; the newest batch the lowest
    smooth = [5.0, *late[::2]]
    lo, hi = y_range.robust(smooth, band) or (0.0, 0.0)
    assert hi < 0.05 and lo == 0.004
    # a far outlier below stays within a decade of the smoothed curve's low
    lo, _ = y_range.robust(smooth, [*band, 1e-9]) or (0.0, 0.0)
    assert lo >= 0.0008


def test_log_is_chosen_over_decades_and_kept_until_the_span_shrinks() -> None:
    assert not y_range.auto_log(0.1, 2.3, was_log=False)
    assert y_range.auto_log(0.002, 0.6, was_log=False)
    assert y_range.auto_log(0.01, 0.5, was_log=True)  # 1.7 decades: stays log
    assert not y_range.auto_log(0.01, 0.5, was_log=False)
    assert not y_range.auto_log(0.01, 0.25, was_log=True)
    assert not y_range.auto_log(-1.0, 100.0, was_log=False)  # no log below zero


def test_clipped_points_sit_at_the_edge_and_are_named() -> None:
    held = y_range.clip([1, 2, 3, 4], [5.0, 0.5, 0.2, -1.0], 0.0, 1.0)
    assert held.ys == [1.0, 0.5, 0.2, 0.0]
    assert held.above == [1] and held.below == [4]
