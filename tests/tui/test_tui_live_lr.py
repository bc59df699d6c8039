"""The group table shows the lr the job uses now (the newest recorded step's, through a
schedule and a ramp), and the editor starts from it and says when it sets a multiplier."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Label
from tui_support import (
    fixed_app,
    loaded,
    lr_at,
    metric_batches,
    pilot_test,
    sgd_groups,
    wait_until,
    write_fixed_store,
)

from optitui.store.commands import Command
from optitui.store.inbox_files import take_inbox
from optitui.store.records import GroupSnapshot, MetaUpdate, MetricBatch
from optitui.tui import fmt
from optitui.tui.screens.field_editor import FieldEditor
from optitui.tui.widgets.group_table import GroupTable


def lr_cell(table: GroupTable, row: int) -> str:
    return str(table.get_cell(str(row), "lr"))


@pilot_test
async def test_the_table_follows_the_recorded_lr_and_the_editor_starts_there(
    tmp_path: Path,
) -> None:
    # the job's snapshot was taken at step 0 (lr 0.05); its scheduler moved body's lr since
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 34)) as pilot:
        await loaded(pilot)
        table = app.dashboard.query_one(GroupTable)
        now = lr_at(600, 1000)
        assert lr_cell(table, 0) == fmt.value(now) != fmt.value(0.05)
        # a ramp over the next steps: the table moves with the recorded steps
        ramp = MetricBatch(
            {
                "step": [601.0, 602.0, 603.0],
                "epoch": [6.0, 6.0, 6.0],
                "time": [1.0, 2.0, 3.0],
                "loss": [0.5, 0.5, 0.5],
                "lr/0": [0.011, 0.012, 0.013],
                "lr/1": [0.022, 0.022, 0.022],
            }
        )
        writer.write([ramp])
        await wait_until(pilot, lambda: lr_cell(table, 0) == "0.013", what="the ramp's lr")
        # the editor pre-fills that value and says the lr follows a schedule
        await pilot.press("e")
        editor = app.screen
        assert isinstance(editor, FieldEditor)
        assert editor.query_one("#value", Input).value == "0.013"
        note = str(editor.query_one("#schedule", Label).render())
        assert "follows CosineAnnealingLR" in note and "multiplier" in note
        await pilot.press("enter")  # unchanged: the lr it asks for is the lr now
        await wait_until(pilot, lambda: list(paths.inbox.iterdir()), what="the command")
        [cmd] = [c for c in take_inbox(paths) if isinstance(c, Command)]
        assert cmd.args["values"] == {"lr": 0.013}
        # a snapshot newer than every recorded step wins until steps pass it
        edited = sgd_groups((0.004, 0.022))
        writer.write([GroupSnapshot(603, edited)])
        await wait_until(pilot, lambda: lr_cell(table, 0) == "0.004", what="the snapshot")
        writer.write(metric_batches(604, 610, 1000))
        await wait_until(
            pilot, lambda: lr_cell(table, 0) == fmt.value(lr_at(610, 1000)), what="newer steps"
        )
    writer.close()


@pilot_test
async def test_the_editor_names_a_script_written_lr_and_plain_runs_get_no_note(
    tmp_path: Path,
) -> None:
    groups = sgd_groups()
    groups[0] = {**groups[0], "lr_by_script": True, "lr_multiplier": 2.0}
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True, groups=groups)
    assert writer is not None
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 34)) as pilot:
        await loaded(pilot)
        await pilot.press("e")
        editor = app.screen
        assert isinstance(editor, FieldEditor)
        note = str(editor.query_one("#schedule", Label).render())
        assert "the script writes this lr" in note and "x2 now" in note
        await pilot.press("down")  # another field: no word about schedules
        assert not editor.query_one("#schedule", Label).display
        await pilot.press("escape")
        controls = dict(app.dashboard.controls, scheduler=None, lr_by_script=False)
        writer.write([MetaUpdate({"controls": controls})])
        await wait_until(pilot, lambda: app.dashboard.controls.get("scheduler") is None)
        await pilot.press("down", "e")  # head: no schedule, the value is the lr
        editor = app.screen
        assert isinstance(editor, FieldEditor)
        assert not editor.query_one("#schedule", Label).display
    writer.close()
