"""The range test from the keyboard: form, live curve, suggestions, apply and cancel."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from textual.widgets import Input, OptionList
from tui_support import (
    FakeJob,
    commands_table,
    fixed_app,
    live,
    loaded,
    on_dashboard,
    pilot_test,
    send_form,
    wait_until,
)

from optitui.store.records import Event, RangeTestUpdate, StatusUpdate
from optitui.tui.app import DashboardApp
from optitui.tui.screens.form import FormScreen
from optitui.tui.screens.range_test import RangeTestScreen, suggestion_text
from optitui.tui.widgets.range_plot import RangePlot

CONFIG: dict[str, Any] = {
    "start_lr": 1e-7,
    "end_lr": 10.0,
    "num_iter": 100,
    "mode": "exp",
    "groups": [0, 1],
    "ref": 0,
    "single_group": False,
}
SUGGESTIONS: list[dict[str, Any]] = [
    {"rule": "steep", "lr": 0.01, "index": 60, "note": None, "factor": 0.2},
    {"rule": "valley", "lr": 0.003, "index": 55, "note": None, "factor": 0.06},
    {
        "rule": "minimum",
        "lr": 0.02,
        "index": 64,
        "note": "too noisy: it is mostly noise",
        "factor": 0.4,
    },
    {"rule": "slide", "lr": None, "index": None, "note": "too short to slide", "factor": None},
]


def curve(n: int) -> dict[str, list[float]]:
    """The first n points of a fixed sweep: the loss falls, then blows up."""
    lrs = [1e-7 * (1e8 ** (i / 99)) for i in range(n)]
    losses = [
        2.0 - 1.5 / (1 + math.exp(-(i - 45) / 6)) + (0.0 if i < 70 else (i - 70) * 0.3)
        for i in range(n)
    ]
    return {"lrs": lrs, "losses": losses, "smoothed": losses}


def sweep(job: FakeJob, test_id: str, n: int, status: str = "running") -> None:
    done = status != "running"
    job.put(
        [
            RangeTestUpdate(
                test_id, 600, status, CONFIG, curve(n), SUGGESTIONS if done else None, None
            )
        ]
    )


def range_screen(app: DashboardApp) -> RangeTestScreen:
    assert isinstance(app.screen, RangeTestScreen), app.screen
    return app.screen


async def start_test(pilot: Any, app: DashboardApp, **texts: str) -> str:
    """r, fill the form, Enter: the range test screen on the new test; returns its id."""
    change = await send_form(pilot, app, "r", **texts)
    screen = range_screen(app)
    assert change.kind == "lr-find" and screen.test_id == change.id
    return change.id


@pilot_test
async def test_the_curve_grows_then_a_suggestion_is_applied(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(120, 36)) as pilot:
            await loaded(pilot)
            test_id = await start_test(pilot, app)  # blanks: the job's defaults
            screen = range_screen(app)
            plot = screen.query_one(RangePlot)
            assert "waiting for the job" in str(screen.query_one("#head").render())
            job.put(
                [
                    Event(
                        600, "lr-find", "range test started", {"marker": "lr-find", "id": test_id}
                    ),
                    StatusUpdate("lr-find", 600, 6),
                ]
            )
            sweep(job, test_id, 10)
            await wait_until(pilot, lambda: plot.render() and plot.points == 10, what="10 points")
            assert "10/100 iterations" in str(screen.query_one("#head").render())
            await pilot.press("1")  # nothing to apply yet
            assert isinstance(app.screen, RangeTestScreen)
            sweep(job, test_id, 40)
            await wait_until(pilot, lambda: plot.render() and plot.points == 40, what="40 points")
            sweep(job, test_id, 80, "done")
            options = screen.query_one(OptionList)
            await wait_until(pilot, lambda: options.option_count == 4, what="the suggestions")
            text = str(plot.render())
            assert "steep 0.01" in text and "valley 0.003" in text  # marked and labelled
            lines = [suggestion_text(i, s).plain for i, s in enumerate(SUGGESTIONS, 1)]
            assert "⚠ untrusted: too noisy" in lines[2] and "ok" in lines[0]
            assert "no answer: too short to slide" in lines[3]
            assert options.get_option_at_index(3).disabled
            await pilot.press("2")
            assert on_dashboard(app)
            await wait_until(pilot, lambda: app.dashboard.steering.recent(1)[0].state == "applied")
            # the test's events put a marker on both plots
            await wait_until(  # the event is read with the answer or at the next read
                pilot,
                lambda: any(m.label == "lr-find" and m.step == 600 for m in app.dashboard.markers),
                what="the test's marker",
            )
            assert all(p.markers == app.dashboard.markers for p in app.dashboard.plots)
    sent = [(k, a) for k, a, _, _ in commands_table(paths)]
    assert sent == [("lr-find", {}), ("lr-find-apply", {"id": test_id, "rule": "valley"})]


@pilot_test
async def test_escape_cancels_a_running_test_and_r_reopens_one(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(120, 36)) as pilot:
            await loaded(pilot)
            await pilot.press("down")  # the selected group: head
            test_id = await start_test(
                pilot, app, num_iter="50", mode="linear", scope="group", start_lr="1e-5"
            )
            job.put(
                [
                    Event(
                        600, "lr-find", "range test started", {"marker": "lr-find", "id": test_id}
                    ),
                    StatusUpdate("lr-find", 600, 6),
                ]
            )
            sweep(job, test_id, 5)
            plot = range_screen(app).query_one(RangePlot)
            await wait_until(pilot, lambda: plot.render() and plot.points == 5)
            # back on the dashboard, r opens the running test instead of a new form
            app.pop_screen()
            await wait_until(
                pilot,
                lambda: (
                    app.dashboard.status is not None and app.dashboard.status.state == "lr-find"
                ),
            )
            await pilot.press("r")
            assert range_screen(app).test_id == test_id
            await pilot.press("escape")
            assert on_dashboard(app)
            await wait_until(pilot, lambda: app.dashboard.steering.recent(1)[0].state == "applied")
    sent = [(k, a) for k, a, _, _ in commands_table(paths)]
    assert sent == [
        ("lr-find", {"start_lr": 1e-5, "num_iter": 50, "mode": "linear", "group": 1}),
        ("lr-find-cancel", {}),
    ]


@pilot_test
async def test_a_bad_form_sends_nothing(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(120, 36)) as pilot:
            await loaded(pilot)
            await pilot.press("r")
            form = app.screen
            assert isinstance(form, FormScreen)
            form.query_one("#start_lr", Input).value = "20"
            await pilot.press("enter")
            assert "start_lr=20.0" in form.error and "end_lr" in form.error
            await pilot.press("escape")
            assert on_dashboard(app)
    assert commands_table(paths) == [] and app.dashboard.steering.changes == {}
