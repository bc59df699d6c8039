"""What the screen says when the run needs the user: paused by a guard, failed, died,
unreadable; and runs past one GPU or driven by a probe."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from textual.containers import VerticalScroll
from tui_support import (
    FIXED_NOW,
    fixed_app,
    loaded,
    on_dashboard,
    pilot_test,
    set_heartbeat,
    wait_until,
    write_fixed_store,
)

from optitui.store.records import Event, MetaUpdate, StatusUpdate
from optitui.tui.app import DashboardApp
from optitui.tui.screens.help import HelpScreen
from optitui.tui.screens.traceback import TracebackScreen
from optitui.tui.widgets.alert_banner import AlertBanner
from optitui.tui.widgets.probe_notice import ProbeNotice
from optitui.tui.widgets.ranks_line import RanksLine
from optitui.tui.widgets.status_bar import StatusBar

TRACEBACK = (
    "Traceback (most recent call last):\n"
    + "".join(f'  File "/fixed/digits.py", line {i}, in step\n    frame_{i}()\n' for i in range(60))
    + "RuntimeError: boom\n"
)


def banner(app: DashboardApp) -> AlertBanner:
    return app.dashboard.query_one(AlertBanner)


@pilot_test
async def test_a_run_that_paused_itself_is_shown_loudly(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 34)) as pilot:
        await loaded(pilot)
        assert not banner(app).display
        writer.write(
            [
                Event(
                    600, "error", "non-finite loss at step 599; paused", {"marker": "divergence"}
                ),
                StatusUpdate("paused", 600, 6, message="diverged at step 599: paused"),
            ]
        )
        await wait_until(pilot, lambda: banner(app).display)
        assert banner(app).text == "⏸ PAUSED — diverged at step 599: paused · space resumes"
        assert banner(app).has_class("-error")
        # the divergence is a problem marker (red ✕) on both plots
        [marker] = [m for m in app.dashboard.markers if m.label == "divergence"]
        assert (marker.step, marker.category.glyph) == (600, "✕")
        assert all(marker in p.markers for p in app.dashboard.plots)
        msg = "out of memory at step 601 (peak 7.90 GiB): CUDA out of memory; training paused"
        writer.write(
            [
                Event(601, "error", msg, {"marker": "oom"}),
                StatusUpdate("paused", 601, 6, message=msg),
            ]
        )
        await wait_until(pilot, lambda: "out of memory at step 601" in banner(app).text)
        oom = [(m.step, m.category.name) for m in app.dashboard.markers if m.label == "oom"]
        assert oom == [(601, "problem")]
        writer.write([StatusUpdate("running", 602, 6)])  # resumed: the banner goes
        await wait_until(pilot, lambda: not banner(app).display)
    writer.close()


@pilot_test
async def test_a_failed_run_shows_the_error_and_its_traceback(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 34)) as pilot:
        await loaded(pilot)
        await pilot.press("t")  # no error yet: nothing opens
        assert on_dashboard(app)
        writer.write(
            [
                Event(600, "error", "RuntimeError: boom", {"traceback": TRACEBACK}),
                StatusUpdate("failed", 600, 6, message="RuntimeError: boom"),
            ]
        )
        await wait_until(pilot, lambda: "TRAINING FAILED" in banner(app).text)
        assert banner(app).text == (
            "✗ TRAINING FAILED at step 600: RuntimeError: boom · t shows the traceback"
        )
        await pilot.press("t")
        screen = app.screen
        assert isinstance(screen, TracebackScreen)
        assert screen.traceback == TRACEBACK and "error at step 600" in str(
            screen.query_one("Label").render()
        )
        scroll = screen.query_one(VerticalScroll)
        await wait_until(pilot, lambda: scroll.max_scroll_y > 0)
        await pilot.press("end")
        await wait_until(pilot, lambda: scroll.scroll_y == scroll.max_scroll_y)
        await pilot.press("escape")
        assert on_dashboard(app)
    writer.close()


@pilot_test
async def test_a_dead_job_says_why(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    paths.output.unlink()  # a job that ran in a terminal of its own: no output captured
    set_heartbeat(paths, FIXED_NOW - 100.0)  # silent for longer than the reader allows
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 34)) as pilot:
        await loaded(pilot)
        await wait_until(pilot, lambda: banner(app).display)
        # the fixed store was written on another host: only its heartbeat can tell
        text = banner(app).text
        assert text.startswith(
            "✗ THE JOB DIED at step 600: no heartbeat for over 15 s from the job on fixed-host"
        ), text
        assert "judged by heartbeat only" in text and "(last heartbeat 1m40s ago)" in text
        # no output of the job's was captured: the banner points elsewhere for it
        assert text.endswith("the terminal or log it ran in may say more"), text


@pilot_test
async def test_a_dead_jobs_banner_points_to_its_output_when_there_is_some(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    paths.output.write_text("epoch 3\nKilled\n")
    set_heartbeat(paths, FIXED_NOW - 100.0)
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 34)) as pilot:
        await loaded(pilot)
        await wait_until(pilot, lambda: banner(app).display and app.dashboard.output_seen)
        await wait_until(pilot, lambda: "in the log below" in banner(app).text)
        assert banner(app).text.endswith("its last output, in the log below, may say more")


@pilot_test
async def test_a_store_of_another_version_is_named_not_drawn(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    conn = sqlite3.connect(paths.db)  # as a later optitui would have written it
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 34)) as pilot:
        await wait_until(pilot, lambda: banner(app).display)
        assert banner(app).text.startswith(
            "✗ this run store cannot be shown: run store schema version 99; "
            "this optitui reads version 1"
        )
        assert app.dashboard.updates == 0 and app.dashboard.plots[0].view.length == 0
        await pilot.press("q")  # nothing to detach from
        await wait_until(pilot, lambda: app.return_value == 0)


def ranks(*paces: float) -> list[dict[str, Any]]:
    return [{"rank": i, "steps_per_s": p, "device_mem": 2 << 30} for i, p in enumerate(paces)]


@pilot_test
async def test_ranks_show_the_straggler(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    app = fixed_app(paths.root)
    async with app.run_test(size=(140, 34)) as pilot:
        await loaded(pilot)
        line = app.dashboard.query_one(RanksLine)
        assert not line.display  # one process: nothing to compare
        writer.write([MetaUpdate({"world_size": 4, "ranks": ranks(12.3, 12.1, 6.0, 12.4)})])
        await wait_until(pilot, lambda: line.display)
        text = line.render()
        assert isinstance(text, object)
        plain = str(text)
        assert plain.startswith("4 ranks · slowest r2 6 steps/s (straggler: median 12.2)")
        assert "r0 12.3/s 2.0 GiB" in plain and "r3 12.4/s 2.0 GiB" in plain
        writer.write([MetaUpdate({"ranks": ranks(12.3, 12.0)})])  # close together: no straggler
        await wait_until(pilot, lambda: "2 ranks" in str(line.render()))
        assert "slowest r1 12 steps/s" in str(line.render())
        assert "straggler" not in str(line.render())
    writer.close()


@pilot_test
async def test_probe_limits_are_named_and_unknown_speeds_are_dashes(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    limits = ["swap-optimizer is not available", "no epochs and no validation loss"]
    hint = "probe = optitui.watch(optimizer, model=model) lifts these limits"
    writer.write(
        [
            MetaUpdate({"probe": {"mode": "zero-code", "limits": limits, "hint": hint}}),
            StatusUpdate("running", 600, 6, steps_per_s=20.0, samples_per_s=0.0),
        ]
    )
    set_heartbeat(paths, FIXED_NOW - 1.0)
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 34)) as pilot:
        await loaded(pilot)
        notice = app.dashboard.query_one(ProbeNotice)
        assert notice.display
        assert str(notice.render()).startswith("zero-code mode: 2 limits (? lists them)")
        assert "123 steps/s  – samples/s" in str(app.dashboard.query_one(StatusBar).render())
        await pilot.press("question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        text = help_screen.text()
        assert "This run is in zero-code mode. What needs the probe:" in text
        assert all(f"- {limit}" in text for limit in limits) and hint in text
        await pilot.press("escape")
        writer.write([MetaUpdate({"probe": {"mode": "watch", "limits": []}})])
        await wait_until(pilot, lambda: not notice.display)
    writer.close()
