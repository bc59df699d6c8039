"""A long overlaid run's first update reads its rows as the plots draw them: the plots draw
from it the same cells as from a whole read (at every zoom, by step and by time), it reads a
share of the rows a whole read does, and the next update reads the whole history."""

from __future__ import annotations

import gc
import math
import sqlite3
import threading
from bisect import bisect_left
from pathlib import Path
from typing import Any, cast

import pytest
from rich.text import Text
from tui_support import (
    loaded,
    metric_batches,
    pilot_test,
    stamp_meta,
    wait_until,
    write_fixed_store,
)

from optitui.store.layout import RunPaths, create_run_dir
from optitui.store.on_demand import StoredColumn, StoredRows
from optitui.store.reader import RunReader
from optitui.store.records import MetricBatch, ValRecord
from optitui.store.writer import StoreWriter
from optitui.tui import history
from optitui.tui.app import build_app
from optitui.tui.feed import FeedUpdate, StoreFeed
from optitui.tui.history import HistoryView
from optitui.tui.overlay import Overlay, overlay_points
from optitui.tui.overlay_feed import OverlayFeed, OverlayRun, overlay_run
from optitui.tui.span import Span
from optitui.tui.widgets.history_plot import HistoryPlot
from optitui.tui.widgets.loss_plot import LossPlot
from optitui.tui.widgets.lr_plot import LrPlot

BETA = 0.9  # a short average: a smoothed point's window is a few rows
COLOR = (255, 95, 135)


def write_overlaid(run_dir: Path, first: int, total: int) -> RunPaths:
    """A run of ``total`` steps that went back from step ``first`` to step ``first - 1000``
    (a restore: ``total + 1000`` rows), gained a third group there, in rows of another
    size, and once recorded a loss of NaN."""
    paths = create_run_dir(run_dir.parent, run_dir.name, run_dir)
    w = StoreWriter(paths, {"groups": ["body", "head"]})
    before = metric_batches(1, first, total)
    hole = before[len(before) // 3].columns
    before[len(before) // 3] = MetricBatch({**hole, "loss": [math.nan, *hole["loss"][1:]]})
    after = metric_batches(first - 999, total, total, chunk=50, groups=3, scale=1.3)
    vals = [ValRecord(s, 0, 1.0 + 1.0 / s) for s in range(500, total, 500)]
    w.write([*before, *vals, *after])
    w.close()
    return paths


def first_view(paths: RunPaths, on_demand: bool) -> HistoryView:
    feed = OverlayFeed(paths.root, ema_beta=BETA, on_demand=on_demand)
    try:
        return feed.poll().view
    finally:
        feed.close()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "QUICK_ROWS_PER_WINDOW", 1)  # a short store will do


def test_stored_columns_hold_what_a_whole_read_does(tmp_path: Path) -> None:
    paths = write_overlaid(tmp_path / "b", 3000, 4000)
    with RunReader(paths.root) as r:
        whole = r.read_metrics()
    rows = StoredRows(RunReader(paths.root))
    assert rows.length == whole.length and rows.names == list(whole.columns)
    for name, want in whole.columns.items():
        col = rows.column(name)
        assert isinstance(col, StoredColumn) and len(col) == len(want) and bool(col)
        got = list(col)
        assert [v for v in got if v == v] == [v for v in want if v == v]
        assert [i for i, v in enumerate(got) if v != v] == [i for i, v in enumerate(want) if v != v]
        for i in (0, 1, 63, 64, 2999, 3000, len(want) - 1, -1, -64):
            assert col[i] == want[i] or (math.isnan(col[i]) and math.isnan(want[i]))
        for a, b, step in ((0, 10, 1), (60, 200, 1), (2990, 3100, 1), (5, 5, 1), (10, 900, 7)):
            assert str(col[a:b:step]) == str(want[a:b:step])
        with pytest.raises(IndexError):
            col[len(want)]
    step = rows.column("step")
    assert bisect_left(step, 1500.5, 0, 3000) == bisect_left(whole.columns["step"], 1500.5, 0, 3000)
    assert all(math.isnan(v) for v in rows.column("lr/2")[:3000])  # before it appeared
    # the store is closed once nothing draws from its rows
    closed = rows._closed
    del rows, col, step
    gc.collect()
    assert not closed.alive


def test_a_row_that_cannot_be_read_reads_as_nan_while_drawn(tmp_path: Path) -> None:
    """A damaged row: the frame is drawn (its values NaN), and the whole read that
    follows stops there and says so, as for any run."""
    paths = write_overlaid(tmp_path / "b", 3000, 4000)
    rows = StoredRows(RunReader(paths.root))
    conn = sqlite3.connect(str(paths.db), isolation_level=None)
    conn.execute("UPDATE metrics SET data = x'00' WHERE id = 3")
    conn.close()
    loss = rows.column("loss")
    assert all(math.isnan(v) for v in loss[128:192])  # the third row's 64 steps
    assert not math.isnan(loss[127]) and not math.isnan(loss[192])
    with RunReader(paths.root) as r, pytest.raises(ValueError, match="does not hold"):
        r.read_metrics()


def test_a_long_overlay_is_first_read_as_drawn_then_whole(tmp_path: Path, quick: None) -> None:
    paths = write_overlaid(tmp_path / "b", 60_000, 100_000)
    feed = OverlayFeed(paths.root, ema_beta=BETA)
    try:
        first = feed.poll()
        assert first.first and first.grew and first.view.length == 101_000
        assert isinstance(first.view.step, StoredColumn)  # no row decoded yet
        rows = first.view.step.rows
        plot = cast(Any, None)  # overlay_lines uses nothing of the widget
        ov = Overlay("b", COLOR, first.view)
        for cls in (LossPlot, LrPlot):

            def lines(*args: Any, cls: type[HistoryPlot] = cls) -> list[Any]:
                return cls.overlay_lines(plot, *args)

            assert overlay_points(ov, lines, (1.0, 100_000.0), 150, False, 0.0, False)
        # a frame reads the rows at its columns' ends and its smoothed points' windows
        # (a few rows each), far from every row (and what the NaN's window needs)
        assert 0 < len(rows._rows) < len(rows.ids) // 2
        again = feed.poll()
        assert again.grew and not isinstance(again.view.step, StoredColumn)
        assert again.view.length == 101_000
    finally:
        feed.close()


def test_a_short_overlay_is_read_whole_at_once(tmp_path: Path) -> None:
    paths = write_overlaid(tmp_path / "b", 3000, 4000)  # under 128 windows of rows
    view = first_view(paths, on_demand=True)
    assert view.length == 5000 and not isinstance(view.step, StoredColumn)


def drawn(plot: HistoryPlot) -> tuple[str, list[tuple[int, int, str]]]:
    plot.redraw(force=True)
    text = plot.render()
    assert isinstance(text, Text)
    return text.plain, [(s.start, s.end, str(s.style)) for s in text.spans]


@pilot_test
async def test_an_overlay_read_as_drawn_draws_the_cells_of_a_whole_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "QUICK_ROWS_PER_WINDOW", 1)
    a, _ = write_fixed_store(tmp_path / "runs" / "a", steps=5000, max_steps=5000)
    b = write_overlaid(tmp_path / "runs" / "b", 3000, 4000)
    on_demand, whole = first_view(b, on_demand=True), first_view(b, on_demand=False)
    assert isinstance(on_demand.step, StoredColumn)
    assert not isinstance(whole.step, StoredColumn) and whole.smooth.blocks == 1
    refined = OverlayFeed(b.root, ema_beta=BETA, on_demand=False)
    refined.poll()
    smoothed = refined.poll().view  # the whole history smoothed row by row
    refined.close()
    assert smoothed.smooth.blocks > 1
    app = build_app(a.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        for plot in app.dashboard.plots:
            for span, by_time in (
                (Span(), False),
                (Span(), True),
                (Span(1500), False),  # zoomed in: the rows after the restore
                (Span(400, 2600), False),  # panned back: rows of the path left behind
                (Span(200, 4000), True),
            ):
                plot.set_span(span)
                plot.set_x_time(by_time)
                got = []
                for view in (on_demand, whole, smoothed):
                    plot.set_overlays((Overlay("b", COLOR, view),))
                    got.append(drawn(plot))
                assert "━ b" in got[0][0], (span, by_time)
                assert got[0] == got[1] == got[2], (type(plot).__name__, span, by_time)


def steered_and_overlaid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[RunPaths, RunPaths]:
    """A short steered run, and a run long enough to be overlaid on demand."""
    monkeypatch.setattr(history, "QUICK_ROWS_PER_WINDOW", 1)
    a, _ = write_fixed_store(tmp_path / "runs" / "a", steps=600)
    return a, write_overlaid(tmp_path / "runs" / "b", 3000, 4000)


async def read_whole(pilot: Any, ov: OverlayRun) -> None:
    await wait_until(
        pilot,
        lambda: ov.updates >= 2 and not isinstance(ov.view.step, StoredColumn),
        timeout=30.0,
        what="the overlay read whole",
    )


@pilot_test
async def test_the_dashboard_reads_an_overlay_whole_after_its_first_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = steered_and_overlaid(tmp_path, monkeypatch)
    app = build_app(a.root, overlays=[overlay_run(b.root)])
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        [ov] = app.dashboard.overlay_runs.values()
        await read_whole(pilot, ov)
        assert ov.view.length == 5000


class HeldFeed(StoreFeed):
    """The steered run's feed, its first read held back until ``go`` is set."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.go = threading.Event()

    def next(self) -> FeedUpdate:
        while not self.go.wait(0.05):
            pass
        return super().next()


@pilot_test
async def test_overlays_are_read_on_once_the_steered_run_is_on_screen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An overlay's whole read waits for the steered run's first update (the longest read
    of the first frame), and follows as soon as that is on screen."""
    a, b = steered_and_overlaid(tmp_path, monkeypatch)
    feed = HeldFeed(a.root)
    app = build_app(a.root, feed=feed, overlays=[overlay_run(b.root)])
    async with app.run_test(size=(160, 48)) as pilot:
        [ov] = app.dashboard.overlay_runs.values()
        await wait_until(pilot, lambda: ov.updates == 1, what="the overlay's first update")
        await pilot.pause()
        assert isinstance(ov.view.step, StoredColumn) and app.dashboard.updates == 0
        assert not ov.consumed.is_set()  # its feed waits before reading on
        feed.go.set()
        await loaded(pilot)
        await read_whole(pilot, ov)


@pilot_test
async def test_overlays_are_read_on_when_the_steered_run_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = steered_and_overlaid(tmp_path, monkeypatch)
    stamp_meta(a, "schema_version", "999")  # no update will ever come from it
    app = build_app(a.root, overlays=[overlay_run(b.root)])
    async with app.run_test(size=(160, 48)) as pilot:
        [ov] = app.dashboard.overlay_runs.values()
        await read_whole(pilot, ov)
        assert app.dashboard.store_problem is not None
        assert app.dashboard.updates == 0


@pilot_test
async def test_runs_read_ahead_are_in_the_first_frame_and_overlays_read_whole_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As attach reads them while Textual starts: the steered run and the overlay are both
    in the first frame (no frame without them), and the overlay is read whole after it."""
    a, b = steered_and_overlaid(tmp_path, monkeypatch)
    feed = StoreFeed(a.root)
    feed.prefetch()
    other = overlay_run(b.root, prefetch=True)
    for ahead in (feed._prefetch, other.feed._prefetch):
        assert ahead is not None
        ahead.join()
    app = build_app(a.root, feed=feed, overlays=[other])
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        plots = app.dashboard.plots
        assert [p.frames for p in plots] == [1, 1]
        assert [len(p.drawn_overlays) for p in plots] == [1, 1]
        [ov] = app.dashboard.overlay_runs.values()
        await read_whole(pilot, ov)
        assert ov.view.length == 5000
