"""The field editor: valid, invalid (inline error, nothing sent), acknowledged, rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import events
from textual.pilot import Pilot
from textual.widgets import Input, Label
from tui_support import (
    ADAM_BETAS,
    FakeJob,
    commands_table,
    fixed_app,
    live,
    loaded,
    pilot_test,
    sgd_groups,
    status_text,
    wait_until,
    write_fixed_store,
)

from optitui.store.commands import Command
from optitui.tui.app import DashboardApp
from optitui.tui.screens.field_editor import FieldEditor
from optitui.tui.widgets.group_table import GroupTable


def editor(app: DashboardApp) -> FieldEditor:
    assert isinstance(app.screen, FieldEditor), app.screen
    return app.screen


async def type_value(pilot: Pilot[Any], app: DashboardApp, text: str) -> None:
    """Replace the value, as typing would (Input.Changed fires), without a key per character."""
    editor(app).query_one(Input).value = text
    await pilot.pause()


@pilot_test
async def test_valid_edit_is_sent_and_acknowledged_with_the_step(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("down", "e")
            ed = editor(app)
            assert ed.target == "group head" and ed.field == "lr"
            # the lr head's recorded steps use (0.022 since a scale-lr at step 300)
            assert ed.query_one(Input).value == "0.022"
            await type_value(pilot, app, "0.01")
            await pilot.press("enter")
            assert app.screen is app.dashboard
            await wait_until(
                pilot, lambda: "lr=0.01 (group head): applied after step 600" in status_text(app)
            )
            await wait_until(
                pilot, lambda: app.dashboard.query_one(GroupTable).get_cell("1", "lr") == "0.01"
            )
    [(kind, args, outcome, step)] = commands_table(paths)
    assert (kind, args, outcome, step) == (
        "set",
        {"values": {"lr": 0.01}, "group": 1},
        "applied",
        600,
    )


@pilot_test
async def test_invalid_input_shows_the_error_inline_and_sends_nothing(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("e")
            await type_value(pilot, app, "-1")
            await pilot.press("enter")
            ed = editor(app)  # still open
            assert ed.error == "lr: got -1; allowed: a finite number >= 0"
            assert "lr: got -1" in str(ed.query_one("#error", Label).render())
            await type_value(pilot, app, "abc")
            await pilot.press("enter")
            assert "'abc' is not a number" in editor(app).error
            await type_value(pilot, app, "0.3")  # fixing it clears the error as you type
            assert editor(app).error == ""
            await pilot.press("escape")
            assert app.screen is app.dashboard
            await pilot.pause(0.2)
    assert app.dashboard.steering.changes == {}
    assert job.seen == [] and commands_table(paths) == []
    assert not list(paths.inbox.glob("*.json"))


@pilot_test
async def test_job_rejection_shows_the_reason(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None

    def reject(cmd: Command) -> str | None:
        return "group body: nesterov needs momentum > 0 and dampening = 0"

    with FakeJob(paths, writer, reject=reject):
        app = fixed_app(paths.root)
        async with app.run_test(size=(120, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("e", "down", "down", "down", "down")
            assert editor(app).field == "nesterov"
            assert editor(app).query_one(Input).value == "false"
            await type_value(pilot, app, "true")
            await pilot.press("enter")
            await wait_until(
                pilot, lambda: "rejected: group body: nesterov needs" in status_text(app)
            )
    [(kind, args, outcome, _)] = commands_table(paths)
    assert (kind, args, outcome) == ("set", {"values": {"nesterov": True}, "group": 0}, "rejected")


@pilot_test
async def test_tuple_fields_and_all_groups(tmp_path: Path) -> None:
    groups = sgd_groups()
    for g in groups:
        g["values"]["betas"] = [0.9, 0.999]
        g["fields"]["betas"] = ADAM_BETAS
    paths, writer = write_fixed_store(tmp_path / "run", groups=groups, keep_open=True)
    assert writer is not None
    with FakeJob(paths, writer, groups=groups):
        app = fixed_app(paths.root)
        async with app.run_test(size=(120, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("a", "e")
            ed = editor(app)
            assert ed.target == "all groups"
            while ed.field != "betas":
                await pilot.press("down")
            assert ed.query_one(Input).value == "0.9, 0.999"
            await type_value(pilot, app, "0.9, 1.5")
            await pilot.press("enter")
            assert "betas: got (0.9, 1.5)" in editor(app).error
            await type_value(pilot, app, "(0.8, 0.99)")
            await pilot.press("enter")
            await wait_until(pilot, lambda: "applied" in status_text(app))
    [(kind, args, outcome, _)] = commands_table(paths)
    assert (kind, args, outcome) == ("set", {"values": {"betas": [0.8, 0.99]}}, "applied")


@pilot_test
async def test_prefill_without_float_noise_errors_name_the_field_and_ctrl_u_clears(
    tmp_path: Path,
) -> None:
    groups = sgd_groups((0.05, 0.02 * 1.1))  # 0.022000000000000002
    paths, _ = write_fixed_store(tmp_path / "run", groups=groups)
    app = fixed_app(paths.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.press("down", "e")
        await wait_until(pilot, lambda: isinstance(app.screen, FieldEditor))
        ed = editor(app)
        box = ed.query_one("#value", Input)
        await wait_until(pilot, lambda: box.value == "0.022", what=f"0.022, not {box.value!r}")
        await type_value(pilot, app, "abc")
        await pilot.press("enter")
        assert ed.error.startswith("lr: 'abc' is not a number"), ed.error
        assert "allowed: a finite number >= 0" in ed.error
        # after moving to another field, ctrl+u empties the box (not one character)
        await pilot.press("down", "down", "down", "down")
        assert ed.field == "nesterov" and box.value == "false"
        await pilot.press("ctrl+u")
        assert box.value == ""
        # in one burst, as a terminal sends them: ctrl+u acts after the moves before it
        for key in ("up", "down", "left", "ctrl+u"):
            app.post_message(events.Key(key, "\x15" if key == "ctrl+u" else None))
        await wait_until(pilot, lambda: ed.field == "nesterov")
        await pilot.pause(0.1)
        assert box.value == ""
        await pilot.press("t", "r", "u", "e")
        assert box.value == "true"
        # the dialog's text fits: nothing cut at 80 columns
        hint = ed.query_one("#hint", Label)
        await wait_until(pilot, lambda: hint.size.height >= 2, what="the hint wrapped")
        assert "(blank: at once)" in str(hint.render())
