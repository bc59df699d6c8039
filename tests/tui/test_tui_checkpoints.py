"""Saving by key and the checkpoint picker, on checkpoints written as a job writes them
(manifest next to a state file of the recorded size; no torch needed)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from textual.widgets import DataTable, Input
from tui_support import (
    START,
    commands_table,
    fixed_app,
    live,
    loaded,
    on_dashboard,
    pilot_test,
    wait_until,
)

from optitui.store.layout import RunPaths
from optitui.store.manifests import Manifest, listing
from optitui.tui.screens.checkpoints import CheckpointPicker
from optitui.tui.screens.form import FormScreen


def write_checkpoint(
    paths: RunPaths, step: int, reason: str, tag: str | None = None, size: int = 2048
) -> Manifest:
    cid = f"step{step:08d}-{reason}-abcd"
    state = paths.checkpoints / f"{cid}.pt"
    state.write_bytes(b"\0" * size)
    m = Manifest(
        id=cid,
        step=step,
        epoch=step // 100,
        loss=1.0 / step,
        val_loss=2.0 / step if reason == "best" else None,
        time=START + step,
        reason=reason,
        tag=tag,
        file=state.name,
        size=size,
        sha256="0" * 64,
        optimizer="SGD",
    )
    (paths.checkpoints / f"{cid}.json").write_text(json.dumps(asdict(m)))
    return m


def checkpoints(paths: RunPaths) -> list[Manifest]:
    found = [
        write_checkpoint(paths, 100, "best"),
        write_checkpoint(paths, 300, "manual", "warm"),
        write_checkpoint(paths, 500, "periodic"),
    ]
    # an interrupted write: a state file whose size does not match its manifest
    broken = write_checkpoint(paths, 550, "periodic")
    (paths.checkpoints / broken.file).write_bytes(b"\0" * 10)
    assert [m.step for m in listing(paths.checkpoints)] == [100, 300, 500]
    return found


@pilot_test
async def test_picker_lists_newest_first_and_enter_restores(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    best, manual, _ = checkpoints(paths)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(120, 34)) as pilot:
            await loaded(pilot)
            await pilot.press("c")
            picker = app.screen
            assert isinstance(picker, CheckpointPicker)
            await wait_until(pilot, lambda: picker.reads > 0)
            table = picker.query_one(DataTable)
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            assert [r[:6] for r in rows] == [
                ["500", "0.002", "-", "1m40s", "periodic", ""],
                ["300", "0.003333", "-", "5m00s", "manual", "warm"],
                ["100", "0.01", "0.02", "8m20s", "best", ""],
            ]
            await pilot.press("escape")  # closes, nothing sent
            assert on_dashboard(app)
            await pilot.press("c")
            again = app.screen
            assert isinstance(again, CheckpointPicker)
            await wait_until(pilot, lambda: again.reads > 0)
            # a checkpoint saved while the picker is open shows up, the cursor stays put
            await pilot.press("down")
            write_checkpoint(paths, 590, "manual")
            await wait_until(pilot, lambda: again.query_one(DataTable).row_count == 4, 5)
            await pilot.press("enter")
            assert on_dashboard(app)
            await wait_until(pilot, lambda: app.dashboard.steering.recent(1)[0].state == "applied")
            assert "restore step 300" in app.dashboard.steering.recent(1)[0].label
    assert [(k, a) for k, a, _, _ in commands_table(paths)] == [("restore", {"id": manual.id})]
    assert best.id != manual.id


@pilot_test
async def test_s_saves_with_or_without_a_tag(tmp_path: Path) -> None:
    paths, job = live(tmp_path)
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(120, 34)) as pilot:
            await loaded(pilot)
            await pilot.press("s", "enter")  # no tag
            await pilot.press("s")
            form = app.screen
            assert isinstance(form, FormScreen)
            form.query_one("#tag", Input).value = "bad/tag"
            await pilot.press("enter")
            assert "tag: 'bad/tag'" in form.error
            form.query_one("#tag", Input).value = "before-warmup"
            await pilot.press("enter")
            await wait_until(pilot, lambda: len(job.seen) == 2)
    assert [(k, a) for k, a, _, _ in commands_table(paths)] == [
        ("save", {}),
        ("save", {"tag": "before-warmup"}),
    ]
