"""The live-control keys (freeze, reset, scheduler, lookahead, clipping, optimizer swap,
divergence policy, ramped edits) against a stand-in job, and what the screen shows of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, Select
from tui_support import (
    FakeJob,
    commands_table,
    fixed_app,
    live,
    loaded,
    on_dashboard,
    pilot_test,
    status_text,
    wait_until,
)

from optitui.tui.app import DashboardApp
from optitui.tui.screens.confirm import ConfirmScreen
from optitui.tui.screens.field_editor import FieldEditor
from optitui.tui.screens.form import FormScreen
from optitui.tui.widgets.controls_line import ControlsLine
from optitui.tui.widgets.group_table import GroupTable


def form(app: DashboardApp) -> FormScreen:
    assert isinstance(app.screen, FormScreen), app.screen
    return app.screen


async def fill(pilot: Pilot[Any], app: DashboardApp, **texts: str) -> None:
    """Put text in the form's fields (Select fields get their value set)."""
    for name, text in texts.items():
        widget = form(app).query_one(f"#{name}")
        if isinstance(widget, Select):
            widget.value = text
        else:
            assert isinstance(widget, Input)
            widget.value = text
    await pilot.pause()


async def answered(pilot: Pilot[Any], app: DashboardApp, job: FakeJob, n: int) -> None:
    await wait_until(pilot, lambda: len(job.seen) >= n, what=f"{n} commands answered")
    await wait_until(
        pilot, lambda: not app.dashboard.steering.pending_groups(), what="nothing pending"
    )


def controls_text(app: DashboardApp) -> str:
    return str(app.dashboard.query_one(ControlsLine).render())


@pilot_test
async def test_freeze_reset_and_scheduler_keys(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(140, 36)) as pilot:
            await loaded(pilot)
            table = app.dashboard.query_one(GroupTable)
            assert "CosineAnnealingLR attached" in controls_text(app)
            # f freezes the selected group, then unfreezes it
            await pilot.press("down", "f")
            await wait_until(pilot, lambda: table.get_cell("1", "state") == "frozen")
            assert "freeze group head: applied after step 600" in status_text(app)
            await pilot.press("f")
            await wait_until(pilot, lambda: table.get_cell("1", "state") == "")
            # z asks first: n sends nothing, y resets the selected group
            await pilot.press("z")
            assert isinstance(app.screen, ConfirmScreen)
            assert "group head" in app.screen.question
            await pilot.press("n")
            assert on_dashboard(app)
            await pilot.press("z", "y")
            await answered(pilot, app, job, 3)
            # with "all groups" on, z resets every group
            await pilot.press("a", "z", "enter")
            await answered(pilot, app, job, 4)
            # d detaches the scheduler, and d again attaches it
            await pilot.press("d")
            await wait_until(pilot, lambda: "CosineAnnealingLR DETACHED" in controls_text(app))
            await pilot.press("d")
            await wait_until(pilot, lambda: "CosineAnnealingLR attached" in controls_text(app))
    sent = [(k, a) for k, a, o, _ in commands_table(paths) if o == "applied"]
    assert sent == [
        ("freeze", {"group": 1}),
        ("unfreeze", {"group": 1}),
        ("reset-state", {"group": 1}),
        ("reset-state", {}),
        ("scheduler", {"action": "detach"}),
        ("scheduler", {"action": "attach"}),
    ]


@pilot_test
async def test_lookahead_clip_swap_and_divergence_forms(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(140, 36)) as pilot:
            await loaded(pilot)
            # k: lookahead is off, so a form asks k and alpha; blanks are the defaults
            await pilot.press("k")
            await fill(pilot, app, k="6", alpha="2")
            await pilot.press("enter")
            assert "alpha: expected a number in (0, 1], got 2" in form(app).error
            await fill(pilot, app, alpha="0.6")
            await pilot.press("enter")
            await wait_until(pilot, lambda: "lookahead k=6 α=0.6" in controls_text(app))
            await pilot.press("k")  # on: k turns it off, no form
            await wait_until(pilot, lambda: "lookahead off" in controls_text(app))
            # g: clipping at a value, then off
            await pilot.press("g")
            await fill(pilot, app, max_norm="abc")
            await pilot.press("enter")
            assert "max_norm: 'abc' is not a number" in form(app).error
            await fill(pilot, app, max_norm="1.5")
            await pilot.press("enter")
            await wait_until(pilot, lambda: "clip 1.5" in controls_text(app))
            await pilot.press("g")
            assert form(app).query_one("#max_norm", Input).value == "1.5"  # the current value
            await fill(pilot, app, max_norm="off")
            await pilot.press("enter")
            await wait_until(pilot, lambda: "clip off" in controls_text(app))
            # o: a class from the list, with FIELD=VALUE pairs
            await pilot.press("o")
            assert form(app).query_one("#name", Select).value == "SGD"
            await fill(pilot, app, name="AdamW", values="weight_decay=0.01 betas=0.9,0.99")
            await pilot.press("tab", "enter")
            assert isinstance(app.screen, ConfirmScreen)  # what changes, before it is sent
            await pilot.press("y")
            await wait_until(pilot, lambda: controls_text(app).startswith("AdamW"))
            # x: the divergence policy, pre-filled with the job's
            await pilot.press("x")
            assert form(app).query_one("#lr_factor", Input).value == "0.5"
            await fill(pilot, app, action="rollback", lr_factor="0.25", skip="5")
            await pilot.press("enter")
            await wait_until(
                pilot, lambda: "on NaN: rollback (lr×0.25, skip 5)" in controls_text(app)
            )
            # Esc leaves a form without sending
            await pilot.press("x", "escape")
            assert on_dashboard(app)
            await answered(pilot, app, job, 6)
    sent = [(k, a) for k, a, o, _ in commands_table(paths) if o == "applied"]
    assert sent == [
        ("lookahead", {"enabled": True, "k": 6, "alpha": 0.6}),
        ("lookahead", {"enabled": False}),
        ("clip", {"max_norm": 1.5}),
        ("clip", {"max_norm": None}),
        (
            "swap-optimizer",
            {"name": "AdamW", "values": {"weight_decay": 0.01, "betas": [0.9, 0.99]}},
        ),
        ("divergence", {"action": "rollback", "lr_factor": 0.25, "skip": 5, "spike_factor": 3.0}),
    ]


@pilot_test
async def test_edit_over_n_steps_sends_a_ramp(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(120, 34)) as pilot:
            await loaded(pilot)
            await pilot.press("e")
            ed = app.screen
            assert isinstance(ed, FieldEditor)
            ed.query_one("#value", Input).value = "0.1"
            ed.query_one("#ramp", Input).value = "zero"
            await pilot.press("enter")
            assert "over N steps: 'zero' is not a whole number" in ed.error
            ed.query_one("#ramp", Input).value = "200"
            await pilot.press("enter")
            await wait_until(
                pilot, lambda: "lr=0.1 over 200 steps (group body): applied" in status_text(app)
            )
            await pilot.press("e", "down", "down", "down", "down")  # nesterov: a bool
            ed = app.screen
            assert isinstance(ed, FieldEditor) and ed.field == "nesterov"
            ed.query_one("#value", Input).value = "true"
            ed.query_one("#ramp", Input).value = "10"
            await pilot.press("enter")
            assert "only a single number can be ramped" in ed.error
            await pilot.press("escape")
    [(kind, args, outcome, _)] = commands_table(paths)
    assert (kind, args, outcome) == (
        "set",
        {"values": {"lr": 0.1}, "group": 0, "ramp": 200},
        "applied",
    )


@pilot_test
async def test_swap_starts_on_the_class_list_refuses_a_no_op_and_confirms(
    tmp_path: Path,
) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(120, 36)) as pilot:
            await loaded(pilot)
            await pilot.press("o")
            assert isinstance(form(app).focused, Select)  # not the FIELD=VALUE box
            await pilot.press("enter")  # opens the list: nothing is sent
            await pilot.press("escape")
            assert isinstance(app.screen, FormScreen)
            # the same class and no fields: a no-op, refused in the form
            await pilot.press("tab", "enter")
            assert "the optimizer is SGD already" in form(app).error
            # the same class with a field: asks first, naming what resets and what is dropped
            await fill(pilot, app, values="nesterov=true")
            await pilot.press("enter")
            question = app.screen
            assert isinstance(question, ConfirmScreen)
            text = question.question
            assert "SGD → SGD" in text and "Set: nesterov=on" in text
            assert "momentum (now 0.9)" in text and "dampening (now 0)" in text
            assert "Dropped: the optimizer state" in text and "lr" in text.split("Carried")[1]
            await pilot.press("n")  # no: nothing is sent
            assert on_dashboard(app)
            await pilot.pause(0.2)
            assert not [c for c in job.seen if c.kind == "swap-optimizer"]
            await pilot.press("o")
            await fill(pilot, app, name="Adam")
            await pilot.press("tab", "enter")
            question = app.screen
            assert isinstance(question, ConfirmScreen) and "SGD → Adam" in question.question
            await pilot.press("y")
            await wait_until(pilot, lambda: controls_text(app).startswith("Adam"))
    sent = [(k, a) for k, a, o, _ in commands_table(paths) if k == "swap-optimizer"]
    assert sent == [("swap-optimizer", {"name": "Adam", "values": {}})]
