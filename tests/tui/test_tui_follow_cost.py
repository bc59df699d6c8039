"""Following a live run within the viewer's share of a core, repainting only what changed."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from textual.widget import Widget
from tui_support import (
    FIXED_NOW,
    FakeJob,
    fixed_app,
    loaded,
    metric_batches,
    pilot_test,
    sgd_groups,
    wait_until,
    write_fixed_store,
)

from optitui.tui.pace import LONGEST_S, Pace
from optitui.tui.settings import ViewerSettings
from optitui.tui.widgets.controls_line import ControlsLine
from optitui.tui.widgets.group_table import GroupTable
from optitui.tui.widgets.status_bar import StatusBar


# -- following a live run within the viewer's share of a core ----------------------------
def test_pace_reads_every_interval_while_cheap_and_slows_within_the_budget() -> None:
    spent = [0.0]
    pace = Pace(0.25, 0.04, clock=lambda: spent[0])
    assert pace.next_wait == LONGEST_S  # before anything was measured: the first frame first
    pace.updated()
    assert pace.next_wait == LONGEST_S
    spent[0] += 0.002  # 2 ms of CPU for an update: 4 reads a second stay within 4%
    pace.updated()
    assert pace.next_wait == 0.25
    spent[0] += 0.02  # 20 ms: the next read waits 0.5 s (20 ms in 0.5 s is 4%)
    pace.updated()
    assert pace.next_wait == pytest.approx(0.5)
    spent[0] += 0.3  # a very costly update: never more than a second between reads
    pace.updated()
    assert pace.next_wait == LONGEST_S
    spent[0] += 0.001  # cheap again: back to the interval
    pace.updated()
    assert pace.next_wait == 0.25
    assert Pace(2.0, 0.04).longest == 2.0  # a longer poll interval than that is kept


def test_pace_counts_the_reading_threads_and_not_the_others() -> None:
    clocks: dict[str, float] = {"ui": 0.0, "reader": 0.0}
    who = threading.local()
    pace = Pace(0.25, 0.04, clock=lambda: clocks[getattr(who, "name", "ui")])

    reader = ThreadPoolExecutor(1)  # one reading thread, as a feed's

    def read(cost: float) -> None:  # it spends on its clock, then asks for the wait
        def run() -> None:
            who.name = "reader"
            clocks["reader"] += cost
            pace.wait()

        reader.submit(run).result()

    read(0.0)  # the reader's first question: its clock from here on
    pace.updated()
    read(0.03)  # 30 ms reading, 10 ms on the UI thread: 40 ms, a wait of a second
    clocks["ui"] += 0.01
    pace.updated()
    assert pace.next_wait == pytest.approx(1.0)
    # a training loop in a thread of the same process (--inline) spends on its own clock:
    # the viewer's own cost (4 ms) is what sets the wait
    clocks["job"] = 5.0
    clocks["ui"] += 0.004
    pace.updated()
    assert pace.next_wait == 0.25
    reader.shutdown()


def test_cpu_budget_is_checked() -> None:
    with pytest.raises(ValueError, match="cpu_budget"):
        ViewerSettings(cpu_budget=0.0)


@pilot_test
async def test_a_costly_viewer_reads_a_live_run_further_apart_and_still_shows_its_steps(
    tmp_path: Path,
) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", steps=600, keep_open=True)
    assert writer is not None
    app = fixed_app(paths.root, cpu_budget=1e-6)  # any update costs more than this
    with FakeJob(paths, writer) as job:
        async with app.run_test(size=(120, 36)) as pilot:
            await loaded(pilot, 600)
            screen = app.dashboard
            polls = screen.updates
            job.put(metric_batches(601, 700, 1000))
            await wait_until(pilot, lambda: screen.plots[0].view.length == 700, timeout=5)
            await pilot.pause(1.0)
            assert screen.pace.next_wait == LONGEST_S
            # about one read a second (at 4 a second there would be 4 or more)
            assert screen.updates - polls <= 4
            job.put(metric_batches(701, 800, 1000))
            await wait_until(pilot, lambda: screen.plots[0].view.length == 800, timeout=5)
            await loaded(pilot, 800)


@pilot_test
async def test_the_status_bar_and_controls_line_change_without_a_new_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new step on the status bar repaints that line only: a layout pass renders every
    widget again, which was most of what following a live run cost."""
    paths, _ = write_fixed_store(tmp_path / "run", steps=600)
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot, 600)
        layouts: list[str] = []
        refresh = Widget.refresh

        def counted(self: Widget, *args: Any, **kwargs: Any) -> Widget:
            if kwargs.get("layout"):
                layouts.append(type(self).__name__)
            return refresh(self, *args, **kwargs)

        monkeypatch.setattr(Widget, "refresh", counted)
        bar = app.dashboard.query_one(StatusBar)
        bar.tick(FIXED_NOW + 100.0)  # "last record ... ago" changes
        controls = app.dashboard.query_one(ControlsLine)
        meta = app.dashboard.meta
        controls.show({**meta, "controls": {**meta["controls"], "optimizer": "AdamW"}})
        await pilot.pause()
        assert "AdamW" in str(controls.render())
        assert "AdamW" in app.export_screenshot()
        assert layouts == []


@pilot_test
async def test_a_live_lr_changes_its_cell_and_keeps_the_table(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run", steps=600)
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot, 600)
        table = app.dashboard.query_one(GroupTable)
        table.move(1)
        groups = sgd_groups((0.0123, 0.02))
        cleared: list[bool] = []
        clear = table.clear

        def counted(columns: bool = False) -> Any:
            cleared.append(columns)
            return clear(columns)

        table.clear = counted  # type: ignore[method-assign]
        table.set_groups(groups, set())
        assert cleared == []  # same columns and rows: the changed cell alone
        assert str(table.get_cell("0", "lr")) == "0.0123"
        assert table.selected == 1
        table.mark_pending({0})
        table.set_groups(groups, set())  # the answer came: the mark goes
        assert str(table.get_cell("0", "")) == ""
        table.set_groups([*groups, {**groups[1], "index": 2, "name": "extra"}], set())
        assert table.row_count == 3 and cleared  # a new group: the rows again
