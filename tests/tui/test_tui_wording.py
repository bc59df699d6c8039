"""What the dashboard and the command line say: group names, short ids, plurals, the
same words as the prompts, where a restore rewound to."""

from __future__ import annotations

from pathlib import Path

from test_tui_checkpoints import write_checkpoint
from textual.widgets import Label
from tui_support import fixed_app, loaded, pilot_test, wait_until, write_fixed_store

from optitui.lrfind_report import table
from optitui.store.reader import CommandOutcome
from optitui.store.records import Event
from optitui.tui.screens.checkpoints import CheckpointPicker
from optitui.tui.screens.form import FormScreen
from optitui.tui.steering import Change
from optitui.tui.widgets.event_log import EventLog

LONG_ID = "01796101694397184712-5235-fd0d9d"


def log_text(app: object) -> str:
    log = app.dashboard.query_one(EventLog)  # type: ignore[attr-defined]
    return "\n".join(log.shown_lines())


@pilot_test
async def test_the_log_names_groups_and_shortens_ids(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    writer.write(
        [
            Event(
                610, "info", f"range test {LONG_ID} started", {"marker": "lr-find", "id": LONG_ID}
            ),
            Event(
                620,
                "command",
                "set momentum=0.5 group=0: applied after step 620",
                {"kind": "set", "args": {"values": {"momentum": 0.5}, "group": 0}},
            ),
        ]
    )
    writer.close()
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await wait_until(pilot, lambda: "group=body" in log_text(app))
        text = log_text(app)
        assert "scale-lr 1.1 group=head: applied after step 300" in text  # as the table says
        assert "set momentum=0.5 group=body: applied" in text
        assert "range test fd0d9d started" in text and LONG_ID not in text


@pilot_test
async def test_one_checkpoint_is_singular_and_clip_errors_use_the_prompts_words(
    tmp_path: Path,
) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    write_checkpoint(paths, 300, "manual")
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        await pilot.press("c")
        picker = app.screen
        assert isinstance(picker, CheckpointPicker)
        hint = picker.query_one("#hint", Label)
        await wait_until(pilot, lambda: "checkpoint" in str(hint.render()))
        assert str(hint.render()) == "1 checkpoint"
        await pilot.press("escape", "g")
        form = app.screen
        assert isinstance(form, FormScreen)
        form.query_one("#max_norm").value = "0"  # type: ignore[attr-defined]
        await pilot.press("enter")
        assert "or off" in form.error and "null" not in form.error, form.error


def test_a_restore_says_where_it_rewound_and_applied_answers_keep_their_note() -> None:
    restore = Change("c1", "restore", {"id": "step7400"}, "restore step 7400 (step7400)", None)
    out = CommandOutcome(
        "c1", "restore", "{}", True, 7400, "rewound from step 7945 to step 7400 (step7400)", 0.0
    )
    said = restore.answered(out).describe()
    assert said == "restore step 7400 (step7400): rewound from step 7945 to step 7400 (step7400)"
    assert "applied after step 7400" not in said
    save = Change("c2", "save", {}, "save checkpoint", None)
    out = CommandOutcome("c2", "save", "{}", True, 7945, "checkpoint step7945-manual-ab", 0.0)
    assert save.answered(out).describe() == (
        "save checkpoint: applied after step 7945; checkpoint step7945-manual-ab"
    )


def test_a_cancelled_range_test_prints_no_empty_table() -> None:
    cancelled = {"id": "fd0d9d", "status": "cancelled", "message": "cancelled", "suggestions": []}
    text = table(cancelled)
    assert "rule" not in text and "no suggestions (the test did not finish)" in text


@pilot_test
async def test_a_long_message_wraps_under_itself_and_is_laid_out_again_on_resize(
    tmp_path: Path,
) -> None:
    """At 80 columns a warning longer than the log wraps under its message column, never
    cut mid-word at the edge; past three rows it ends in an ellipsis; wider, it is one row."""
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    app = fixed_app(paths.root)
    said = (
        "non-finite loss or gradient norm (nan) at step 150; training paused: "
        "space resumes, c restores a checkpoint"
    )
    long = "metric 'x' skipped: " + " ".join(["a very long reason"] * 20)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        assert writer is not None
        writer.write([Event(600, "error", said), Event(600, "warning", long)])
        log = app.dashboard.query_one(EventLog)
        await wait_until(pilot, lambda: said in "\n".join(log.shown_lines()))
        await pilot.pause()
        rows = [line.text.rstrip() for line in log.lines]
        start = next(i for i, r in enumerate(rows) if "non-finite" in r)
        first, second = rows[start], rows[start + 1]
        assert first.startswith("     600 error      non-finite loss") and len(first) <= 78
        assert second.startswith(" " * 20) and second.strip() and said.endswith(second.strip())
        warned = rows[start + 2 :]  # the last line: three rows, the third cut short
        assert len(warned) == 3, warned
        assert warned[0].startswith("     600 warning    metric 'x' skipped")
        assert warned[1].startswith(" " * 20) and warned[2].endswith("…"), warned
        await pilot.resize_terminal(200, 30)
        await wait_until(pilot, lambda: any(r.text.rstrip().endswith(said) for r in log.lines))
    writer.close()
