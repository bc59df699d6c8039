"""The dashboard against a real job process: edits acknowledged and rejected by the trainer."""

from __future__ import annotations

import os
from pathlib import Path

from textual.widgets import Input
from tui_support import RealJob, loaded, pilot_test, status_text, wait_until

from optitui.store.reader import RunReader
from optitui.tui.app import build_app
from optitui.tui.screens.field_editor import FieldEditor
from optitui.tui.settings import ViewerSettings
from optitui.tui.widgets.event_log import EventLog
from optitui.tui.widgets.group_table import GroupTable


@pilot_test
async def test_edits_against_a_real_job(tmp_path: Path) -> None:
    with RealJob(tmp_path) as job:
        proc = job.process
        assert os.getsid(proc.pid) != os.getsid(0)  # its own session: no SIGHUP from us
        app = build_app(job.paths.root, process=proc, settings=ViewerSettings())
        async with app.run_test(size=(120, 34)) as pilot:
            await wait_until(pilot, lambda: app.dashboard.query_one(GroupTable).groups)
            await loaded(pilot)
            screen = app.dashboard
            # acknowledged: lr of "body" (group 0)
            await pilot.press("e")
            assert isinstance(app.screen, FieldEditor)
            app.screen.query_one(Input).value = ""
            await pilot.press(*"0.02", "enter")
            await wait_until(
                pilot, lambda: "lr=0.02 (group body): applied after step" in status_text(app), 30
            )
            table = screen.query_one(GroupTable)
            await wait_until(pilot, lambda: table.get_cell("0", "lr") == "0.02", 30)
            # rejected by the trainer's cross-field rule: nesterov needs momentum > 0
            await pilot.press("down", "e")
            ed = app.screen
            assert isinstance(ed, FieldEditor)
            while ed.field != "nesterov":
                await pilot.press("down")
            ed.query_one(Input).value = ""
            await pilot.press(*"true", "enter")
            await wait_until(
                pilot, lambda: "nesterov=True (group head): rejected:" in status_text(app), 30
            )
            assert "momentum" in status_text(app)
            # the job's own command events reach the log; its output tail too
            log = screen.query_one(EventLog)
            rejected = lambda: any("rejected" in line for line in log.shown_lines())  # noqa: E731
            await wait_until(pilot, rejected, 10)
            assert any("training on cpu" in line for line in log.shown_lines())
            # history keeps arriving
            n = screen.plots[0].view.length
            await wait_until(pilot, lambda: screen.plots[0].view.length > n, 20)
        with RunReader(job.paths.root) as reader:
            _, groups = reader.groups()
            assert groups[0]["values"]["lr"] == 0.02
            assert groups[1]["values"]["nesterov"] is False
