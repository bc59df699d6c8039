"""A 20,000-step run with a spike at its start, as a user first sees it (snapshots; look
at them): the loss axis follows the late curve, zoom and pan keys move the window, and
the log keeps the last command in view with the routine saves condensed to one line."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from long_run import LAST_COMMAND, STEPS, best_save, loss_at, write_long_store
from test_tui_layout import y_labels
from tui_support import fixed_app, snapshot_ready

from optitui.tui.app import DashboardApp
from optitui.tui.widgets.event_log import EventLog
from optitui.tui.widgets.group_table import GroupTable
from optitui.tui.widgets.loss_plot import LossPlot
from optitui.tui.widgets.lr_plot import LrPlot
from optitui.tui.widgets.routine_line import RoutineLine


def long_app(tmp_path: Path) -> DashboardApp:
    return fixed_app(write_long_store(tmp_path / "regression-long").root)


def x_labels(text: str) -> list[str]:
    """The step labels under a plot (its last line)."""
    return text.splitlines()[-1].split()


def test_a_long_run_with_a_spike_shows_the_late_curve_160x48(
    snap_compare: Any, tmp_path: Path
) -> None:
    app = long_app(tmp_path)
    seen: dict[str, Any] = {}

    async def run_before(pilot: Any) -> None:
        await snapshot_ready(STEPS)(pilot)
        screen = app.dashboard
        seen["loss"] = str(screen.query_one(LossPlot).render())
        seen["lr"] = str(screen.query_one(LrPlot).render())
        seen["routine"] = str(screen.query_one(RoutineLine).line())
        seen["log"] = [line.text for line in screen.query_one(EventLog).lines]
        seen["groups"] = screen.query_one(GroupTable).label(0)

    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)
    # the axis spans the late losses' scale, not the spike's (50 at step 1)
    late = [loss_at(s) for s in range(STEPS // 2, STEPS + 1)]
    values = [v for _, v in y_labels(seen["loss"])]
    assert values, seen["loss"]
    assert max(values) <= 30 * statistics.median(late) and max(values) < loss_at(1) / 100
    assert min(values) <= min(late) * 1.5
    header = seen["loss"].splitlines()[0]
    assert "log-y" in header and "clipped" in header  # chosen by itself; the spike marked
    assert "↑" in seen["loss"].splitlines()[2]
    # routine saves: one line; the last command and the warning stay in the log
    step, val = best_save()
    assert (
        seen["routine"].split(None, 2)[2]
        == f"best: step {step} (val {val:.4g}), 100 saved, keep 3 + best"
    )
    assert seen["log"][-1].endswith(LAST_COMMAND)
    assert not any("saved step" in line for line in seen["log"])
    assert any("loss spike at step 5000" in line for line in seen["log"])
    # one unnamed group: named "group 0", no lr legend to read
    assert seen["groups"] == "group 0"
    assert seen["lr"].splitlines()[0].strip() == "lr · all steps · log-y"


def test_zoom_and_pan_keys_move_the_window_80x24(snap_compare: Any, tmp_path: Path) -> None:
    app = long_app(tmp_path)
    windows: list[tuple[str, tuple[int, int], tuple[int, int], list[str]]] = []
    log: list[str] = []

    async def press(pilot: Any, key: str) -> None:
        await pilot.press(key)
        await snapshot_ready(STEPS)(pilot)
        loss, lr = app.dashboard.query_one(LossPlot), app.dashboard.query_one(LrPlot)
        text = str(loss.render())
        windows.append((key, loss.window_rows(), lr.window_rows(), x_labels(text)))
        windows[-1][3].insert(0, text.splitlines()[0])  # the title names the window

    async def run_before(pilot: Any) -> None:
        await snapshot_ready(STEPS)(pilot)
        for key in ("left_square_bracket", "left_square_bracket", "comma", "full_stop", "0"):
            await press(pilot, key)
        for key in ("left_square_bracket", "left_square_bracket", "comma", "v"):
            await press(pilot, key)
        log.extend(line.text.rstrip() for line in app.dashboard.query_one(EventLog).lines)
        log.append(str(app.dashboard.query_one(RoutineLine).line()))

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
    rows = [(key, loss) for key, loss, _, _ in windows]
    assert rows[:5] == [
        ("left_square_bracket", (10_000, 20_000)),
        ("left_square_bracket", (15_000, 20_000)),
        ("comma", (12_500, 17_500)),  # half a window back
        ("full_stop", (15_000, 20_000)),  # back at the newest: following again
        ("0", (0, 20_000)),
    ]
    assert all(loss == lr for _, loss, lr, _ in windows)  # both plots share the window
    titles = [labels[0] for *_, labels in windows]
    assert "last 10000" in titles[0] and "last 5000" in titles[1]
    assert "12.5k-17.5k" in titles[2] and titles[4].startswith("loss · log-y")
    ticks = windows[2][3][1:]
    assert ticks[0] == "12.5k" and ticks[-1] == "17.5k", ticks
    # v: the log shows the commands only, and the line over it says so
    *lines, routine = log
    assert len(lines) == 1 and lines[0].endswith(LAST_COMMAND), lines
    assert routine.endswith(" commands only · v: all ")
