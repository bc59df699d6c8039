"""The dashboard on a run read through the serve-stdio protocol (a local stand-in for ssh):
the same screen, keys that steer the job there, and a lost connection said plainly."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from tui_support import commands_table, fixed_settings, live, loaded, pilot_test, wait_until

from optitui.remote.client import RemoteRun
from optitui.remote.target import Target
from optitui.tui.app import build_app
from optitui.tui.remote_feed import RemoteFeed
from optitui.tui.widgets.alert_banner import AlertBanner
from optitui.tui.widgets.event_log import EventLog

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def local_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTITUI_SSH", f"{sys.executable} {REPO / 'tests' / 'local_ssh.py'}")
    monkeypatch.setenv("OPTITUI_REMOTE", f"env PYTHONPATH={REPO} {sys.executable} -m optitui")


@pilot_test
async def test_remote_dashboard_steers_and_says_when_the_link_drops(
    tmp_path: Path, local_ssh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, job = live(tmp_path)
    with job:
        run = RemoteRun(Target("gpu1", str(paths.root)), interval=0.05)
        run.start()
        run.wait_ready(30)
        feed = RemoteFeed(run)
        feed.prefetch()
        app = build_app(None, run=run, feed=feed, settings=fixed_settings(), note="over ssh")
        async with app.run_test(size=(120, 36)) as pilot:
            await loaded(pilot, 600)
            assert app.dashboard.status is not None and app.dashboard.status.step == 600
            await pilot.press("down", "plus")  # lr x1.1 on the head group, through the link
            change = app.dashboard.steering.recent(1)[0]
            await wait_until(
                pilot, lambda: app.dashboard.steering.changes[change.id].state == "applied"
            )
            assert app.dashboard.steering.changes[change.id].step == 600

            ssh = run.ssh_pid
            assert ssh is not None
            gate = tmp_path / "ssh-gate"  # the reconnect waits until the drop has been seen
            gate.touch()
            monkeypatch.setenv("OPTITUI_TEST_SSH_GATE", str(gate))
            os.kill(ssh, 9)
            banner = app.dashboard.query_one(AlertBanner)
            await wait_until(pilot, lambda: "connection to gpu1 lost" in banner.text, 20)
            assert "the job is not affected" in banner.text
            gate.unlink()
            await wait_until(pilot, lambda: run.connections == 2 and not banner.text, 30)
            log = app.dashboard.query_one(EventLog)
            assert any("connection back" in line for line in log.shown_lines())
            await pilot.press("plus")  # and the next command goes through the new link
            change = app.dashboard.steering.recent(1)[0]
            await wait_until(
                pilot, lambda: app.dashboard.steering.changes[change.id].state == "applied"
            )
        run.close()
    kinds = [(k, o) for k, _, o, _ in commands_table(paths)]
    assert kinds == [("scale-lr", "applied"), ("scale-lr", "applied")]  # each once
