"""The first read of a long run goes on screen before its loss is smoothed row by row: each
smoothed point drawn comes from the window of values that holds all but 2**-64 of its
weight, and equals the smoothed value of the whole history (the steered run's line and
every overlaid run's); the next read smooths every row and hands the same picture again."""

from __future__ import annotations

import math
import random
from array import array
from functools import lru_cache
from pathlib import Path
from typing import Any, cast
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tui_support import FIXED_NOW, write_fixed_store

from optitui.store.columns import MetricColumns
from optitui.tui import decimate, history
from optitui.tui.bulk import numpy
from optitui.tui.feed import StoreFeed
from optitui.tui.history import Ema, History, HistoryView, _window
from optitui.tui.overlay import Overlay, overlay_points
from optitui.tui.widgets.loss_plot import LossPlot


def noisy(n: int, seed: int, holes: float = 0.0) -> array[float]:
    """A decaying noisy loss with a spike or two, and NaN or inf in a share ``holes``."""
    rnd = random.Random(seed)
    out = array("d")
    for s in range(1, n + 1):
        x = 3.0 / math.sqrt(s) + 0.2 * rnd.random()
        if rnd.random() < 0.0005:
            x *= 1e4  # a spike far above the rest
        if rnd.random() < holes:
            x = rnd.choice([math.nan, math.inf])
        out.append(x)
    return out


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 30_000),
    seed=st.integers(0, 10**6),
    beta=st.sampled_from([0.0, 0.5, 0.9, 0.98, 0.99]),
    holes=st.sampled_from([0.0, 0.0, 0.001, 0.05]),
)
def test_a_smoothed_point_from_its_window_is_the_whole_history_s(
    n: int, seed: int, beta: float, holes: float
) -> None:
    assert numpy() is not None  # long windows are summed by numpy here
    check_windows(n, seed, beta, holes)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 30_000),
    seed=st.integers(0, 10**6),
    beta=st.sampled_from([0.9, 0.98, 0.99]),
    holes=st.sampled_from([0.0, 0.001]),
)
def test_without_numpy_a_window_is_summed_in_python_to_the_same_value(
    n: int, seed: int, beta: float, holes: float
) -> None:
    with patch.object(history, "numpy", lambda: None):
        check_windows(n, seed, beta, holes)


def check_windows(n: int, seed: int, beta: float, holes: float) -> None:
    """Points smoothed from their windows equal the whole history's smoothed values."""
    src = noisy(n, seed, holes)
    whole = Ema(beta)
    whole.extend(src, n)
    full, quick = whole.view(src, n), Ema(beta).view(src, n)  # the second: no block yet
    rnd = random.Random(seed)
    for i in {n - 1, *(rnd.randrange(n) for _ in range(30))}:
        want, got = full.at(i), quick.at(i)
        if math.isnan(want):
            assert math.isnan(got)
        else:  # the same to the last few bits (what the window leaves out is under 2**-64)
            assert got == pytest.approx(want, rel=1e-12, abs=1e-300)


@lru_cache(maxsize=4)
def columns(n: int) -> dict[str, array[float]]:
    return {
        "step": array("d", (float(s) for s in range(1, n + 1))),
        "time": array("d", (FIXED_NOW + s for s in range(n))),
        "loss": noisy(n, 1),
        "lr/0": array("d", (0.1 * 0.5 ** (s // 1000) for s in range(n))),
    }


class Rows:
    """A run's rows as a store reader hands them (copied into the reader's columns)."""

    def __init__(self, n: int) -> None:
        self.cols = columns(n)
        self.n = n
        self.taken = False

    def read_metrics(self, into: MetricColumns | None = None) -> MetricColumns:
        out = into if into is not None else MetricColumns()
        if not self.taken:
            out.extend(self.cols, self.n)
            self.taken = True
        return out

    def val(self, after_id: int = 0) -> list[tuple[int, int, int, float | None]]:
        return []


def drawn(view: HistoryView, buckets: int) -> tuple[list[float], list[float]]:
    """The smoothed line as the loss plot draws it, and an overlaid run's as it does."""
    own = decimate.last(view.step, view.smooth.at, 0, view.length, buckets // 2)
    plot = cast(Any, None)  # overlay_lines uses nothing of the widget

    def lines(*args: Any) -> list[decimate.Points]:
        return LossPlot.overlay_lines(plot, *args)

    over = overlay_points(
        Overlay("other", (255, 95, 135), view),
        lines,
        (1.0, float(view.length)),
        buckets,
        False,
        0.0,
        False,
    )
    return own.ys, [y for pts in over for y in pts.ys]


@pytest.mark.parametrize("buckets", [8, 150])
def test_a_quick_read_draws_the_same_lines_as_a_smoothed_one(buckets: int) -> None:
    n = len(_window(0.98)) * history.QUICK_ROWS_PER_WINDOW + 777
    quick, full = History(), History()
    assert quick.read(Rows(n), quick=True) and full.read(Rows(n))
    assert not quick.refined and full.refined
    assert quick.view().smooth.blocks == 1  # nothing smoothed row by row yet
    (own_q, over_q), (own_f, over_f) = drawn(quick.view(), buckets), drawn(full.view(), buckets)
    assert len(own_q) == len(own_f) >= buckets // 2 and len(over_q) == len(over_f)
    assert own_q == pytest.approx(own_f, rel=1e-12)
    assert over_q == pytest.approx(over_f, rel=1e-12)
    assert quick.refine() and quick.refined and not quick.refine()
    assert drawn(quick.view(), buckets) == drawn(full.view(), buckets)  # now to the bit


def test_a_short_run_or_a_long_average_is_smoothed_at_once() -> None:
    short = History()
    short.read(Rows(5000), quick=True)
    assert short.refined and not short.refine()
    slow = History(ema_beta=0.9999)  # its window is longer than the run's 1/128
    slow.read(Rows(len(_window(0.98)) * history.QUICK_ROWS_PER_WINDOW + 10), quick=True)
    assert slow.refined


def test_the_feed_hands_the_whole_history_first_then_smooths_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "QUICK_ROWS_PER_WINDOW", 1)  # a short store will do
    paths, _ = write_fixed_store(tmp_path / "run", steps=3000)
    feed = StoreFeed(paths.root, clock=lambda: FIXED_NOW)
    first = feed.poll()
    assert first.first and first.grew and first.view.length == 3000  # the real data, all
    assert first.view.smooth.blocks == 1 and not feed.history.refined
    again = feed.poll()
    assert again.grew and feed.history.refined and again.view.length == 3000
    assert again.view.smooth.blocks == 3000 // history.BLOCK + 1
    assert drawn(first.view, 86)[0] == pytest.approx(drawn(again.view, 86)[0], rel=1e-12)
    assert not feed.poll().grew  # nothing new, nothing left to smooth
    feed.close()
