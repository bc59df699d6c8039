"""Every key of the dashboard, driven with Pilot against a stand-in job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_tui_footer import footer_words
from textual import events
from textual.widgets._footer import FooterKey
from tui_support import (
    commands_table,
    fixed_app,
    keys_settled,
    live,
    loaded,
    pilot_test,
    status_text,
    wait_until,
    write_fixed_store,
)

from optitui.tui.app import DashboardApp
from optitui.tui.keys import KEYS
from optitui.tui.screens.help import HelpScreen
from optitui.tui.screens.quit import QuitScreen
from optitui.tui.widgets.group_table import PENDING_MARK, GroupTable
from optitui.tui.widgets.key_footer import KeyFooter
from optitui.tui.widgets.loss_plot import LossPlot
from optitui.tui.widgets.lr_plot import LrPlot


def on_dashboard(app: DashboardApp) -> bool:
    return app.screen is app.dashboard


def table(app: DashboardApp) -> GroupTable:
    return app.dashboard.query_one(GroupTable)


@pilot_test
async def test_up_down_select_groups_and_wrap(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    app = fixed_app(paths.root)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        assert table(app).selected == 0
        await pilot.press("down")
        assert table(app).selected == 1
        await pilot.press("down")  # two groups: wraps to the first
        assert table(app).selected == 0
        await pilot.press("up")
        assert table(app).selected == 1
        assert app.dashboard.target() == (1, "group head")


@pytest.mark.parametrize(
    ("key", "factor"), [("plus", 1.1), ("minus", 1 / 1.1), ("asterisk", 2.0), ("slash", 0.5)]
)
@pilot_test
async def test_lr_keys_scale_the_selected_group(tmp_path: Path, key: str, factor: float) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("down", key)
            change = app.dashboard.steering.recent(1)[0]
            await wait_until(
                pilot, lambda: app.dashboard.steering.changes[change.id].state != "pending"
            )
            done = app.dashboard.steering.changes[change.id]
            assert done.state == "applied" and done.step == 600
            await wait_until(pilot, lambda: "applied after step 600" in str(status_text(app)))
    [(kind, args, outcome, step)] = commands_table(paths)
    assert (kind, outcome, step) == ("scale-lr", "applied", 600)
    assert args["group"] == 1 and args["factor"] == pytest.approx(factor)


@pilot_test
async def test_change_is_pending_until_the_job_answers(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    job.hold.set()
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("plus")
            await wait_until(
                pilot, lambda: job.paths.inbox.exists() and not list(job.paths.inbox.glob("*.json"))
            )
            await pilot.pause(0.2)  # the job holds it: still pending
            assert "pending" in status_text(app)
            assert table(app).get_cell("0", "") == PENDING_MARK
            job.hold.clear()
            await wait_until(pilot, lambda: "applied after step 600" in status_text(app))
            assert table(app).get_cell("0", "") == ""
            # the job's new group snapshot reaches the table
            await wait_until(pilot, lambda: table(app).get_cell("0", "lr") == "0.055")


@pilot_test
async def test_all_toggle_sends_without_a_group(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("a")
            assert app.dashboard.all_groups and table(app).all_groups
            await pilot.press("asterisk")
            await wait_until(pilot, lambda: "applied" in status_text(app))
            assert "all groups" in status_text(app)
            await pilot.press("a")
            assert not app.dashboard.all_groups and not table(app).all_groups
    [(kind, args, _, _)] = commands_table(paths)
    assert kind == "scale-lr" and "group" not in args and args["factor"] == 2.0


@pilot_test
async def test_space_pauses_and_resumes_and_n_steps_only_while_paused(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            assert "n" not in footer_keys(app)  # running: n is not in the key bar
            assert footer_keys(app)["space"] == "pause"
            await pilot.press("n")  # running: nothing is sent, a hint says why
            assert app.dashboard.steering.changes == {}
            assert any("steps once while paused" in n.message for n in app._notifications)
            await pilot.press("space")
            await wait_until(pilot, app.dashboard.paused, what="the run paused")
            await keys_settled(pilot)
            assert footer_keys(app).get("n") == "step"  # paused: it is
            assert footer_keys(app)["space"] == "resume"  # space says what it does now
            await pilot.press("n")
            await wait_until(
                pilot, lambda: app.dashboard.status is not None and app.dashboard.status.step == 601
            )
            await pilot.press("space")
            await wait_until(
                pilot,
                lambda: (
                    app.dashboard.status is not None and app.dashboard.status.state == "running"
                ),
            )
            await keys_settled(pilot)
            assert "n" not in footer_keys(app)
            assert footer_keys(app)["space"] == "pause"
    kinds = [(k, a) for k, a, o, _ in commands_table(paths) if o == "applied"]
    assert kinds == [("pause", {}), ("step", {"n": 1}), ("resume", {})]


@pilot_test
async def test_the_palettes_pause_and_step_do_what_their_keys_do_now(tmp_path: Path) -> None:
    """The palette's "pause / resume" resumes a paused run, as space does then; its
    "train one step" on a running job says why it cannot, as n does."""
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            commands = {c.title: c for c in app.get_system_commands(app.dashboard)}
            await commands["Pause / resume training"].callback()
            await wait_until(pilot, app.dashboard.paused, what="the run paused")
            await commands["Pause / resume training"].callback()
            await wait_until(pilot, lambda: not app.dashboard.paused(), what="the run resumed")
            await commands["While paused: train one step, then pause again"].callback()
            await wait_until(
                pilot,
                lambda: any("steps once while paused" in n.message for n in app._notifications),
                what="the hint",
            )
    kinds = [k for k, _, o, _ in commands_table(paths) if o == "applied"]
    assert kinds == ["pause", "resume"]


@pilot_test
async def test_at_80_columns_n_steps_while_paused_and_the_key_bar_keeps_quit(
    tmp_path: Path,
) -> None:
    """At 80 columns the key bar has no room for n: paused, it still steps, and every
    key of the bar fits (quit is not cut off)."""
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            await pilot.press("space")
            await wait_until(pilot, app.dashboard.paused, what="the run paused")
            await keys_settled(pilot)
            words, cut = footer_words(app)
            assert cut == 0 and "q quit" in words and "n step" not in words, words
            step = app.dashboard.status.step
            await pilot.press("n")
            await wait_until(
                pilot,
                lambda: app.dashboard.status is not None and app.dashboard.status.step == step + 1,
            )


def footer_keys(app: Any) -> dict[str, str]:
    """The key bar's keys, as key -> word."""
    return {k.key: k.description for k in app.screen.query_one(KeyFooter).query(FooterKey)}


@pilot_test
async def test_l_and_w_toggle_log_axis_and_window(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    app = fixed_app(paths.root, window=100)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        loss, lr = app.dashboard.query_one(LossPlot), app.dashboard.query_one(LrPlot)
        assert not loss.log_y and "linear" in str(loss.render())
        await pilot.press("l")
        assert loss.log_y and "log-y" in str(loss.render())
        assert loss.window_rows() == (0, 600)
        await pilot.press("w")
        assert loss.window_rows() == (500, 600) and lr.window_rows() == (500, 600)
        assert "last 100" in str(loss.render()) and "last 100" in str(lr.render())
        await pilot.press("w", "l")
        assert loss.window_rows() == (0, 600) and not loss.log_y


@pilot_test
async def test_help_screen_lists_every_key(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    app = fixed_app(paths.root)
    async with app.run_test(size=(100, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(f"{k} {v}" for k, v in app.screen.keys)
        shown = [k for k, _ in app.screen.keys]
        assert shown == [k.shown_as for k in KEYS if k.listed] + ["ctrl+p"]
        for key in [
            "↑↓",
            "+",
            "-",
            "*",
            "/",
            "a",
            "e",
            "f",
            "z",
            "d",
            "k",
            "g",
            "o",
            "x",
            "spc",
            "n",
            "r",
            "s",
            "c",
            "t",
            "l",
            "w",
            "[ ]",
            ", .",
            "0",
            "v",
            "p",
            "m",
            "M",
            "?",
            "ctrl+p",
            "q",
        ]:
            assert key in shown, key
        assert "detach" in text and "pause" in text
        assert "↑↓ select the previous / next param group" in text
        assert any(
            line.startswith("ctrl+p") and "command palette" in line
            for line in app.screen.text().splitlines()
        )
        await pilot.press("escape")
        assert on_dashboard(app)


@pilot_test
async def test_command_palette_offers_the_dashboard_actions(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    app = fixed_app(paths.root)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        commands = {c.title: c for c in app.get_system_commands(app.dashboard)}
        log_y = "Loss plot: log / linear y axis (chosen by itself until pressed)"
        assert log_y in commands and "Pause / resume training" in commands
        await commands[log_y].callback()
        assert app.dashboard.log_y
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette")


@pilot_test
async def test_q_cancel_then_detach_leaves_the_job_alone(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("q")
            assert isinstance(app.screen, QuitScreen)
            assert {b.id for b in app.screen.query("Button")} == {"detach", "stop", "cancel"}
            await pilot.press("escape")
            assert on_dashboard(app)
            await pilot.press("q", "d")
            await wait_until(pilot, lambda: app.return_value == 0)
        assert app.quit_choice == "detach"
    assert commands_table(paths) == []


@pilot_test
async def test_q_stop_stops_the_job_then_quits(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("q", "s")
            await wait_until(pilot, lambda: app.return_value == 0, what="exit after the stop")
        assert app.quit_choice == "stop"
    assert [(k, o) for k, _, o, _ in commands_table(paths)] == [("stop", "applied")]


@pilot_test
async def test_q_quits_at_once_when_the_run_is_over(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run", state="finished")
    app = fixed_app(paths.root)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        await pilot.press("plus")  # not sent: nobody would answer
        assert "not sent: the run is finished" in status_text(app)
        assert not list(paths.inbox.iterdir())
        await pilot.press("q")
        await wait_until(pilot, lambda: app.return_value == 0)
        assert not isinstance(app.screen, QuitScreen)


def test_readme_keys_table_lists_every_key() -> None:
    """The README's keys table and the key table the app binds stay the same list."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    table = text.split("### Keys", 1)[1].split("\n\n", 2)[1]
    documented: set[str] = set()
    for line in table.splitlines()[2:]:
        documented.update(line.split("|")[1].split())
    spelled = {"↑↓": ["↑", "↓"], "-": ["−"], "spc": ["space"], "[ ]": ["[", "]"], ", .": [",", "."]}
    for key in KEYS:
        if key.listed:
            for word in spelled.get(key.shown_as, [key.shown_as]):
                assert word in documented, (key, sorted(documented))
    assert "ctrl+p" in documented


@pilot_test
async def test_palette_screenshot_goes_to_the_run_directory_and_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "no-such-home"))  # a server: no ~/Downloads
    paths, _ = write_fixed_store(tmp_path / "run")
    app = fixed_app(paths.root)
    notes: list[str] = []
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        monkeypatch.setattr(app, "notify", lambda message, **kw: notes.append(str(message)))
        commands = {c.title: c for c in app.get_system_commands(app.dashboard)}
        commands["Screenshot"].callback()
        saved = await wait_until(pilot, lambda: list(paths.root.glob("*.svg")), what="the SVG")
        assert saved[0].read_text().startswith("<svg")
        await wait_until(pilot, lambda: notes)
        assert notes == [f"screenshot saved: {saved[0]}"]


@pytest.mark.parametrize("key", ["e", "c"])
@pilot_test
async def test_a_key_typed_after_q_on_a_run_that_is_over_is_dropped(
    tmp_path: Path, key: str
) -> None:
    """q quits at once when the run is over; a key that was already typed behind it (a
    dialog's key) must not open its dialog into a closing app (a traceback, exit 1)."""
    paths, _ = write_fixed_store(tmp_path / "run", state="finished")
    app = fixed_app(paths.root)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        for typed in ("q", key):  # both queued before q is handled, as typed in a terminal
            app.post_message(events.Key(typed, typed))
        await wait_until(pilot, lambda: app.return_value == 0)
        await pilot.pause()
    assert app.return_code == 0


@pytest.mark.parametrize("key", ["e", "r", "s", "g"])
@pilot_test
async def test_a_run_that_is_over_opens_no_dialog_to_steer_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """A dialog on a finished run would only be filled in to be told "not sent" when it is
    submitted: the key says at once that the run is over, and opens nothing."""
    paths, _ = write_fixed_store(tmp_path / "run", state="finished")
    app = fixed_app(paths.root)
    notes: list[str] = []
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        monkeypatch.setattr(app, "notify", lambda message, **kw: notes.append(str(message)))
        await pilot.press(key)
        said = "the run is finished: nothing can be sent to it"
        await wait_until(pilot, lambda: said in notes)
        await pilot.pause()
        assert app.screen is app.dashboard
