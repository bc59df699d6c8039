"""The terminal bell: once when the run comes to need the user while a dashboard
watches (it paused itself, failed, died or finished); never for what the user did,
never when turned off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from tui_support import fixed_app, loaded, pilot_test, wait_until, write_fixed_store

from optitui.store.records import StatusUpdate
from optitui.tui.app import DashboardApp


def count_rings(app: DashboardApp) -> list[str]:
    rings: list[str] = []

    def bell() -> None:
        rings.append(state(app) or "?")

    app.bell = bell  # type: ignore[method-assign]
    return rings


def state(app: DashboardApp) -> str | None:
    status = app.dashboard.status
    return None if status is None else status.state


async def a_few_updates(pilot: Pilot[Any], app: DashboardApp, n: int = 3) -> None:
    start = app.dashboard.updates
    await wait_until(pilot, lambda: app.dashboard.updates >= start + n, what=f"{n} updates")


@pilot_test
async def test_the_bell_rings_once_each_time_the_run_needs_the_user(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    app = fixed_app(paths.root)
    rings = count_rings(app)
    async with app.run_test(size=(120, 34)) as pilot:
        await loaded(pilot)
        writer.write([StatusUpdate("paused", 600, 6)])  # the user's own pause
        await wait_until(pilot, lambda: state(app) == "paused")
        await a_few_updates(pilot, app)
        assert rings == []
        writer.write([StatusUpdate("paused", 600, 6, message="diverged at step 599: paused")])
        await wait_until(pilot, lambda: rings == ["paused"], what="the bell")
        await a_few_updates(pilot, app)
        assert rings == ["paused"]  # once, not at every update
        writer.write([StatusUpdate("running", 600, 6)])
        await wait_until(pilot, lambda: state(app) == "running")
        writer.write([StatusUpdate("finished", 700, 7, message="700 steps done")])
        await wait_until(pilot, lambda: rings == ["paused", "finished"], what="the bell")
        await a_few_updates(pilot, app)
        assert rings == ["paused", "finished"]
    writer.close()


@pilot_test
async def test_no_bell_when_turned_off_or_for_a_run_that_had_ended_before(
    tmp_path: Path,
) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    app = fixed_app(paths.root, bell=False)
    rings = count_rings(app)
    async with app.run_test(size=(120, 34)) as pilot:
        await loaded(pilot)
        writer.write([StatusUpdate("failed", 600, 6, message="RuntimeError: boom")])
        await wait_until(pilot, lambda: state(app) == "failed")
        await a_few_updates(pilot, app)
    writer.close()
    assert rings == []
    ended, _ = write_fixed_store(tmp_path / "ended", state="failed")
    app = fixed_app(ended.root)
    rings = count_rings(app)
    async with app.run_test(size=(120, 34)) as pilot:
        await loaded(pilot)
        await a_few_updates(pilot, app)
    assert rings == []  # attached after the fact: the banner says it, the bell does not
