"""The optimizer race from the keyboard: form, live curves, ranked table, apply, cancel."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from textual.widgets import Input, OptionList
from tui_support import (
    FIXED_NOW,
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

from optitui.store.race_results import rank
from optitui.store.records import Event, RaceUpdate, StatusUpdate
from optitui.tui.app import DashboardApp
from optitui.tui.screens.form import FormScreen
from optitui.tui.screens.race import RaceScreen, row_text
from optitui.tui.widgets.alert_banner import AlertBanner
from optitui.tui.widgets.race_plot import RacePlot, step_ticks, y_top

TEXTS = ["current", "lr*0.5", "lr*2", "optimizer=AdamW,lr=1e-3"]
STEPS = 60
#: how fast each candidate's loss falls; the last one blows up after step 20
RATES = [0.02, 0.012, 0.035, 0.05]


def curve(i: int, n: int) -> list[float]:
    """Candidate i's first n smoothed losses: a fixed, noisy-looking fall."""
    out = []
    for s in range(n):
        y = 0.4 + 1.6 * math.exp(-RATES[i] * s) + 0.02 * math.sin(1.7 * s + i)
        if i == 3 and s > 20:
            y += 0.25 * (s - 20)
        out.append(y)
    return out


def race_record(race_id: str, done: int, status: str = "running") -> RaceUpdate:
    """The race after ``done`` steps in all (candidates run one after another)."""
    losses, states = [], []
    for i in range(len(TEXTS)):
        n = max(0, min(STEPS, done - i * STEPS))
        if i == 3:
            n = min(n, 28)  # it diverged there
        losses.append(curve(i, n))
        full = n == STEPS or (i == 3 and n == 28)
        states.append(
            "waiting" if n == 0 else ("running" if not full else ("diverged" if i == 3 else "done"))
        )
    vals: list[float | None] = [0.61, 0.66, 0.55, None] if status == "done" else [None] * 4
    data = {
        "losses": losses,
        "smoothed": losses,
        "states": states,
        "notes": [None, None, None, "the loss is not finite (nan)"] if status == "done" else [],
        "val": vals,
        "seconds": {"snapshot": 0.004, "restore": 0.012, "candidates": [4.0] * (done // STEPS)},
        "started": FIXED_NOW - 20.0,
    }
    config = {"steps": STEPS, "val": True, "val_batches": 20, "group": None, "candidates": TEXTS}
    results = rank(TEXTS, losses, losses, states, vals, STEPS) if status != "running" else None
    return RaceUpdate(race_id, 600, status, config, data, results, None, FIXED_NOW)


def race_screen(app: DashboardApp) -> RaceScreen:
    assert isinstance(app.screen, RaceScreen), app.screen
    return app.screen


async def start_race(pilot: Any, app: DashboardApp, **texts: str) -> str:
    """R, fill the form, Enter: the race screen on the new race; returns its id."""
    change = await send_form(pilot, app, "R", **texts)
    screen = race_screen(app)
    assert change.kind == "race" and screen.race_id == change.id
    return change.id


def started(job: FakeJob, race_id: str) -> None:
    job.put(
        [
            Event(600, "race", "race started", {"marker": "race", "id": race_id}),
            StatusUpdate("race", 600, 6),
        ]
    )


@pilot_test
async def test_the_curves_grow_then_a_candidate_is_applied(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(120, 36)) as pilot:
            await loaded(pilot)
            race_id = await start_race(pilot, app)  # pre-filled: lr*0.5 lr*2
            screen = race_screen(app)
            plot = screen.query_one(RacePlot)
            assert "waiting for the job" in str(screen.query_one("#head").render())
            started(job, race_id)
            job.put([race_record(race_id, 90)])
            await wait_until(pilot, lambda: plot.render() and plot.curves == 2, what="2 curves")
            head = str(screen.query_one("#head").render())
            assert "candidate 1/3 (lr*0.5)" in head and "step 30/60" in head and "ETA" in head
            await pilot.press("1")  # nothing to apply yet
            assert isinstance(app.screen, RaceScreen)
            job.put([race_record(race_id, 4 * STEPS, "done")])
            options = screen.query_one(OptionList)
            await wait_until(pilot, lambda: options.option_count == 5, what="the table")
            # the legend is in the head, not over the curves' starts in the plot
            head = str(screen.query_one("#head").render())
            assert "■ 1 lr*0.5" in head and "■ 3 optimizer=AdamW,lr=1e-3" in head
            assert "lr*0.5" not in str(plot.render())
            rows = race_screen(app).race.results  # type: ignore[union-attr]
            assert rows[0]["text"] == "lr*2" and rows[-1]["state"] == "diverged"
            lines = [row_text(r, 24).plain for r in rows]
            assert lines[0].startswith("1 ■ 2   lr*2 ") and lines[0].endswith(" 0.55")
            assert "(reference)" in lines[1] and "diverged" in lines[3]
            assert options.get_option_at_index(4).disabled  # under the head
            await pilot.press("4")  # the diverged one: refused on screen
            assert isinstance(app.screen, RaceScreen)
            await pilot.press("1")
            assert on_dashboard(app)
            await wait_until(pilot, lambda: app.dashboard.steering.recent(1)[0].state == "applied")
            # the race's event puts a marker on both plots
            await wait_until(  # the event is read with the answer or at the next read
                pilot,
                lambda: any(m.label == "race" and m.step == 600 for m in app.dashboard.markers),
                what="the race's marker",
            )
            assert all(p.markers == app.dashboard.markers for p in app.dashboard.plots)
    sent = [(k, a) for k, a, _, _ in commands_table(paths)]
    assert sent == [
        ("race", {"candidates": ["lr*0.5", "lr*2"]}),
        ("race-apply", {"id": race_id, "candidate": 2}),
    ]


@pilot_test
async def test_escape_cancels_a_running_race_and_r_reopens_it(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(120, 36)) as pilot:
            await loaded(pilot)
            await pilot.press("down")  # the selected group: head
            race_id = await start_race(
                pilot,
                app,
                steps="60",
                candidates="lr*0.5 momentum=0.8",
                val="false",
                scope="group",
            )
            started(job, race_id)
            job.put([race_record(race_id, 20)])
            plot = race_screen(app).query_one(RacePlot)
            await wait_until(pilot, lambda: plot.render() and plot.curves == 1)
            app.pop_screen()  # back on the dashboard, R opens the running race
            await wait_until(
                pilot,
                lambda: app.dashboard.status is not None and app.dashboard.status.state == "race",
            )
            banner = app.dashboard.query_one(AlertBanner)
            await wait_until(pilot, lambda: "optimizer race running: R opens it" in banner.text)
            await pilot.press("R")
            assert race_screen(app).race_id == race_id
            await pilot.press("escape")
            assert on_dashboard(app)
            await wait_until(pilot, lambda: app.dashboard.steering.recent(1)[0].state == "applied")
    sent = [(k, a) for k, a, _, _ in commands_table(paths)]
    assert sent == [
        (
            "race",
            {"group": 1, "candidates": ["lr*0.5", "momentum=0.8"], "steps": 60, "val": False},
        ),
        ("race-cancel", {}),
    ]


@pilot_test
async def test_a_bad_candidate_sends_nothing(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(120, 36)) as pilot:
            await loaded(pilot)
            await pilot.press("R")
            form = app.screen
            assert isinstance(form, FormScreen)
            assert form.query_one("#candidates", Input).value == "lr*0.5 lr*2"
            form.query_one("#candidates", Input).value = "lr*0.5 optimizer=Lion"
            await pilot.press("enter")
            assert "candidate 'optimizer=Lion'" in form.error and "Lion" in form.error
            await pilot.press("escape")
            assert on_dashboard(app)
    assert commands_table(paths) == [] and app.dashboard.steering.changes == {}


@pilot_test
async def test_no_candidate_shows_the_usage_and_the_app_stays_up(tmp_path: Path) -> None:
    """The refusal's text has brackets ([steps=N] [val=true|false]): shown as typed, not
    read as markup (which crashed the app)."""
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            await pilot.press("R")
            form = app.screen
            assert isinstance(form, FormScreen)
            form.query_one("#candidates", Input).value = ""
            await pilot.press("enter")
            assert "[steps=N] [val=true|false]" in form.error
            error = form.query_one("#error")
            assert "[val=true|false]" in str(error.render())
            form.query_one("#candidates", Input).value = "lr*2"  # typing clears it
            await pilot.pause()
            assert form.error == ""
            await pilot.press("escape")
            assert on_dashboard(app)
    assert commands_table(paths) == []


def test_a_worse_candidate_is_drawn_whole_and_a_diverged_one_clipped() -> None:
    """lr*2 rising to 2.2x the start is the race's answer: the axis holds it (it used to be
    cut at 1.5x the start, a flat line along the top); a diverged curve does not stretch it."""
    current = [(n, 0.03 - 0.0001 * n) for n in range(1, 51)]
    worse = [(n, 0.03 + 0.0007 * n) for n in range(1, 51)]  # ends at 0.065
    blown = [(n, 0.03 * 3**n) for n in range(1, 12)]
    assert y_top([current, worse], ["done", "done"]) == worse[-1][1]
    assert y_top([current, worse, blown], ["done", "done", "diverged"]) == worse[-1][1]
    # still running towards divergence: drawn, up to 5x the highest start
    assert y_top([current, blown], ["done", "running"]) == 5 * blown[0][1]


def test_the_step_axis_reads_whole_steps() -> None:
    """Steps are whole: 1, 20, 40, 60 (plotext's own ticks read 1.0, 15.8, 30.5, ...)."""
    assert step_ticks(60) == [1, 20, 40, 60]
    assert step_ticks(50) == [1, 10, 20, 30, 40, 50]
    assert step_ticks(1000) == [1, 200, 400, 600, 800, 1000]
    assert step_ticks(2) == [1, 2] and step_ticks(7) == [1, 2, 4, 6]


def test_a_candidate_a_cancel_kept_from_running_reads_not_run() -> None:
    row = {"rank": 3, "candidate": 2, "text": "lr*2", "final": None, "state": "waiting"}
    assert row_text(row, 24).plain.endswith("lr*2" + " " * 21 + "not run")


@pilot_test
async def test_q_goes_back_to_the_dashboard_and_the_race_runs_on(tmp_path: Path) -> None:
    """Without it the only way off a running race's screen was Esc, which cancels it."""
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            race_id = await start_race(pilot, app)
            started(job, race_id)
            job.put([race_record(race_id, 20)])
            await pilot.press("q")
            assert on_dashboard(app)
            await wait_until(
                pilot,
                lambda: app.dashboard.status is not None and app.dashboard.status.state == "race",
            )
            await pilot.press("R")
            assert race_screen(app).race_id == race_id
    assert [k for k, _, _, _ in commands_table(paths)] == ["race"]  # no race-cancel
