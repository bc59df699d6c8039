"""SVG snapshots with fixed data (regenerate: pytest --snapshot-update; look at them).

The showcase run has three groups (one at a constant lr), a scheduler, markers of
every kind and a failure banner; the main screen is taken at four sizes, every
dialog at the smallest, where text is cut first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_tui_checkpoints import write_checkpoint
from test_tui_overlays import app_with, overlays_drawn, two_runs
from test_tui_race import STEPS, race_record
from test_tui_range_test import CONFIG, SUGGESTIONS, curve
from textual.widgets import Input
from tui_support import (
    FIXED_NOW,
    fixed_app,
    snapshot_ready,
    wait_until,
    write_fixed_store,
    write_showcase_store,
)

from optitui.store.records import RangeTestUpdate
from optitui.tui.app import DashboardApp

SIZES = [(80, 24), (120, 36), (160, 48), (240, 67)]
TEST_ID = "01796101694397184712-5235-fd0d9d"


def showcase(tmp_path: Path, state: str = "failed") -> DashboardApp:
    paths = write_showcase_store(tmp_path / "digits-showcase", state=state)
    return fixed_app(paths.root)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_main_screen(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(showcase(tmp_path), terminal_size=size, run_before=snapshot_ready(600))


def test_compact_lr_plot_80x24(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Any) -> None:
        await snapshot_ready(600)(pilot)
        await pilot.press("p")  # the other plot, at full width
        await snapshot_ready(600)(pilot)

    assert snap_compare(showcase(tmp_path), terminal_size=(80, 24), run_before=run_before)


def test_main_screen_log_y_last_window_all_groups_160x48(snap_compare: Any, tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "digits-fixed")
    app = fixed_app(paths.root, window=200)

    async def run_before(pilot: Any) -> None:
        await snapshot_ready(600)(pilot)
        await pilot.press("l", "w", "down", "a")
        await snapshot_ready(600)(pilot)
        # "a" says so in a 2 s toast; a slow machine outlives it, so the picture must not hold it
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)


#: (name, keys that open it, the screen class it must be); the run is alive, so q asks
DIALOGS = [
    ("help", ["question_mark"], "HelpScreen"),
    ("edit", ["e"], "FieldEditor"),
    ("reset_state", ["z"], "ConfirmScreen"),
    ("swap", ["o"], "FormScreen"),
    (
        "swap_confirm",
        ["o", "tab", "n", "e", "s", "t", "e", "r", "o", "v", "=", "1", "enter"],
        "ConfirmScreen",
    ),
    ("lookahead", ["k"], "FormScreen"),
    ("clip", ["g"], "FormScreen"),
    ("divergence", ["x"], "FormScreen"),
    ("range_test_form", ["r"], "FormScreen"),
    ("save", ["s"], "FormScreen"),
    ("checkpoints", ["c"], "CheckpointPicker"),
    ("markers", ["M"], "MarkersScreen"),
    ("quit", ["q"], "QuitScreen"),
]


@pytest.mark.parametrize(("name", "keys", "screen"), DIALOGS, ids=[d[0] for d in DIALOGS])
def test_dialog_80x24(
    snap_compare: Any, tmp_path: Path, name: str, keys: list[str], screen: str
) -> None:
    app = showcase(tmp_path, state="running")
    if name == "checkpoints":
        assert app.paths is not None
        write_checkpoint(app.paths, 400, "best")
        write_checkpoint(app.paths, 500, "periodic")
        write_checkpoint(app.paths, 600, "manual", "before-lr-change")

    async def run_before(pilot: Any) -> None:
        await snapshot_ready(600)(pilot)
        await pilot.press(*keys)
        await wait_until(pilot, lambda: type(app.screen).__name__ == screen, what=screen)
        for box in app.screen.query(Input):
            box.cursor_blink = False  # a blinking cursor is drawn or not by the clock
        await pilot.pause(0.3)  # lists read off the UI thread (checkpoints) arrive

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_traceback_80x24(snap_compare: Any, tmp_path: Path) -> None:
    app = showcase(tmp_path)  # failed: t opens the error's traceback

    async def run_before(pilot: Any) -> None:
        await snapshot_ready(600)(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "TracebackScreen")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_range_test_screen(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    done = RangeTestUpdate(TEST_ID, 600, "done", CONFIG, curve(100), SUGGESTIONS, None, FIXED_NOW)
    paths = write_showcase_store(tmp_path / "digits-showcase", "running", [done])
    app = fixed_app(paths.root)

    async def run_before(pilot: Any) -> None:
        await snapshot_ready(600)(pilot)
        app.dashboard.open_range_test(TEST_ID)
        await wait_until(pilot, lambda: type(app.screen).__name__ == "RangeTestScreen")
        await wait_until(pilot, lambda: getattr(app.screen, "reads", 0) > 0)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def three_runs(tmp_path: Path) -> DashboardApp:
    """A running run with two others over it: a longer one with other group names and
    higher losses, and a shorter, lower one."""
    a, b = two_runs(tmp_path)
    c, _ = write_fixed_store(
        a.root.parent / "digits-20260921-114502-00112233445566ff",
        steps=450,
        state="stopped",
        loss_scale=0.7,
    )
    return app_with(a, b, c)


@pytest.mark.parametrize("size", [(160, 48), (80, 24)], ids=["160x48", "80x24"])
def test_overlays(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:
        await overlays_drawn(pilot, 900, 450)
        pilot.app.clear_notifications()

    assert snap_compare(three_runs(tmp_path), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(120, 36), (80, 24)], ids=["120x36", "80x24"])
def test_runs_browser(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    app = three_runs(tmp_path)

    async def run_before(pilot: Any) -> None:
        await overlays_drawn(pilot, 900, 450)
        await pilot.press("b")
        await wait_until(pilot, lambda: getattr(app.screen, "reads", 0) > 0, what="the runs")
        await pilot.press("down")
        for box in app.screen.query(Input):
            box.cursor_blink = False
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (120, 36)], ids=["80x24", "120x36"])
def test_race_screen(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    """A finished race: four candidates' curves (one diverged), the ranked table."""
    done = race_record(TEST_ID, 4 * STEPS, "done")
    paths = write_showcase_store(tmp_path / "digits-showcase", "running", [done])
    app = fixed_app(paths.root)

    async def run_before(pilot: Any) -> None:
        await snapshot_ready(600)(pilot)
        app.dashboard.open_race(TEST_ID)
        await wait_until(pilot, lambda: type(app.screen).__name__ == "RaceScreen")
        await wait_until(pilot, lambda: getattr(app.screen, "reads", 0) > 0)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
