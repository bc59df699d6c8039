"""End to end in a real terminal (tmux): run, steer, lose the terminal, attach, steer again."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from optitui.store.client import NoAnswer, send
from optitui.store.layout import RunPaths
from optitui.store.manifests import listing
from optitui.store.reader import RunReader

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

REPO = Path(__file__).resolve().parents[2]
BRAILLE = range(0x2800, 0x2900)


class Tmux:
    """A private tmux server (its own socket), so tests never touch the user's sessions."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        res = subprocess.run(
            ["tmux", "-f", "/dev/null", "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        return res.stdout

    def start(self, name: str, command: str, size: tuple[int, int] = (120, 36)) -> None:
        w, h = str(size[0]), str(size[1])
        # the shell tmux starts may export COLUMNS/LINES of the moment; the app must
        # ask the terminal instead (and follow resizes)
        command = f"exec env -u COLUMNS -u LINES {command}"
        self("new-session", "-d", "-s", name, "-x", w, "-y", h, "-c", str(REPO), command)
        # no client is attached: without "manual", tmux may fall back to 80x24 later
        self("set-option", "-g", "window-size", "manual")
        self("resize-window", "-t", name, "-x", w, "-y", h)

    def screen(self, name: str) -> str:
        return self("capture-pane", "-p", "-t", name)

    def size(self, name: str) -> str:
        return self("display-message", "-p", "-t", name, "#{window_width}x#{window_height}").strip()

    def keys(self, name: str, *keys: str) -> None:
        self("send-keys", "-t", name, *keys)

    def kill_server(self) -> None:
        self("kill-server")


def wait_for(
    cond: Callable[[], Any], timeout: float, what: str, show: Callable[[], str] | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    seen = f"; the screen:\n{show()}" if show is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{seen}")


def braille(text: str) -> int:
    return sum(ord(c) in BRAILLE for c in text)


def filled(screen: str, *words: str) -> str | None:
    """The screen once it shows the loss plot with data (braille dots) and ``words``."""
    ok = "loss ·" in screen and braille(screen) > 150 and all(w in screen for w in words)
    return screen if ok else None


def status(run: Path) -> Any:
    with RunReader(run) as r:
        return r.status()


def lrs(run: Path) -> list[float]:
    with RunReader(run) as r:
        return [g["values"]["lr"] for g in r.groups()[1]]


def applied(run: Path) -> list[tuple[str, str]]:
    with RunReader(run) as r:
        rows = r.conn.execute(
            "SELECT kind, payload FROM commands WHERE outcome = 'applied' ORDER BY id"
        )
        return list(rows)


def pid_alive(pid: int) -> bool:
    """False once ``pid`` has exited; a job this process started (``start_job``) is reaped
    here, or it would answer signal 0 as a zombie until the test process ends."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(tmp_path / "tmux.sock")
    yield t
    t.kill_server()
    # whatever happened, leave no job training: the job is in its own session
    for run in (tmp_path / "runs").glob("*"):
        try:
            pid = RunReader(run).meta().get("pid")
        except Exception:
            continue
        if isinstance(pid, int) and pid_alive(pid):
            with contextlib.suppress(NoAnswer):
                send(RunPaths(run), "stop", {}, timeout=10)
            deadline = time.monotonic() + 20
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                os.kill(pid, 9)


def test_run_detach_by_losing_the_terminal_then_attach(tmux: Tmux, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    py = shlex.quote(sys.executable)
    tmux.start("run", f"{py} -m optitui run sample_runs/digits.py --root {shlex.quote(str(root))}")
    # the plots fill
    screen = wait_for(
        lambda: filled(tmux.screen("run"), "body"),
        90,
        "the dashboard with filled plots",
        lambda: tmux.size("run") + "\n" + tmux.screen("run"),
    )
    assert "running" in screen and "head" in screen
    [run] = [p for p in root.iterdir() if (p / "store.sqlite").exists()]
    with RunReader(run) as reader:
        pid = reader.meta()["pid"]
    # steer from the keyboard: select "head", lr x1.1
    before = lrs(run)
    tmux.keys("run", "Down")
    time.sleep(0.3)
    tmux.keys("run", "+")
    wait_for(lambda: lrs(run)[1] != before[1], 30, "the head group's lr to change")
    assert lrs(run)[1] == pytest.approx(before[1] * 1.1) and lrs(run)[0] == before[0]
    wait_for(lambda: "applied after step" in tmux.screen("run"), 10, "the change on screen")
    # lose the terminal: the viewer dies with it, the job trains on
    tmux.kill_server()
    step = status(run).step
    wait_for(lambda: status(run).step > step + 50, 30, "the job's step count to keep growing")
    assert pid_alive(pid) and status(run).state == "running"
    # attach again: the whole history, and steering still works
    # no RUN_DIR: the most recent running run under --root
    tmux.start("attach", f"{py} -m optitui attach --root {shlex.quote(str(root))}")
    screen = wait_for(
        lambda: filled(tmux.screen("attach")),
        30,
        "the attached dashboard",
        lambda: tmux.screen("attach"),
    )
    assert run.name in screen and "scale-lr" in screen  # the earlier change is in the log
    count = len(applied(run))
    tmux.keys("attach", "*")
    wait_for(lambda: len(applied(run)) > count, 30, "the attached viewer's command applied")
    # the group snapshot may land in the store just after the outcome
    wait_for(lambda: lrs(run)[0] != before[0], 10, "the body group's new lr")
    assert lrs(run)[0] == pytest.approx(before[0] * 2)
    wait_for(lambda: "applied after step" in tmux.screen("attach"), 10, "the change on screen")
    # quit the viewer with "stop training": the job ends
    tmux.keys("attach", "q")
    wait_for(lambda: "Detach" in tmux.screen("attach"), 10, "the quit question")
    tmux.keys("attach", "s")
    wait_for(lambda: not pid_alive(pid), 60, "the job to stop")
    assert status(run).state == "stopped"


def events(run: Path) -> list[Any]:
    with RunReader(run) as r:
        return r.events()


def test_save_and_restore_by_keys(tmux: Tmux, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    py = shlex.quote(sys.executable)
    tmux.start("run", f"{py} -m optitui run sample_runs/digits.py --root {shlex.quote(str(root))}")
    wait_for(
        lambda: filled(tmux.screen("run"), "body"), 90, "the dashboard", lambda: tmux.screen("run")
    )
    [run] = [p for p in root.iterdir() if (p / "store.sqlite").exists()]
    folder = RunPaths(run).checkpoints
    # s: a tag, Enter saves
    tmux.keys("run", "s")
    wait_for(lambda: "Save a checkpoint" in tmux.screen("run"), 10, "the save form")
    tmux.keys("run", "e2e-tag", "Enter")
    saved = wait_for(
        lambda: [m for m in listing(folder) if m.tag == "e2e-tag"], 30, "the tagged checkpoint"
    )
    assert saved[0].reason == "manual"
    wait_for(lambda: "save checkpoint e2e-tag: applied" in tmux.screen("run"), 10, "the answer")
    # c: the picker, newest first; Enter restores the highlighted one
    tmux.keys("run", "c")
    wait_for(lambda: "Enter restores" in tmux.screen("run"), 10, "the picker")
    wait_for(lambda: "e2e-tag" in tmux.screen("run"), 10, "our checkpoint in the list")
    tmux.keys("run", "Enter")
    restores = wait_for(
        lambda: [json.loads(p) for k, p in applied(run) if k == "restore"], 90, "the restore"
    )
    chosen = restores[0]["args"]["id"]
    assert chosen in {m.id for m in listing(folder)}
    rewound = wait_for(
        lambda: [e for e in events(run) if (e.data or {}).get("marker") == "restore"],
        30,
        "the restore event",
    )
    assert (
        rewound[0].data["id"] == chosen
        and rewound[0].data["to_step"] < rewound[0].data["from_step"]
    )
    wait_for(lambda: "rewound from step" in tmux.screen("run"), 10, "the rewind in the log")
    # the state it left was copied first and is written beside the others (the writer
    # thread lists it once on disk: on a slow disk after the rewind), so it can be undone
    wait_for(
        lambda: any(m.reason == "before-restore" for m in listing(folder)),
        30,
        "the state before the restore, saved",
    )
    tmux("set-option", "-t", "run", "remain-on-exit", "on")  # to read what it prints last
    tmux.keys("run", "q")
    wait_for(lambda: "Detach" in tmux.screen("run"), 10, "the quit question")
    tmux.keys("run", "s")
    wait_for(lambda: status(run).state == "stopped", 60, "the job to stop")
    # like a detach, a stop says where the run is and how it ended
    ended = wait_for(
        lambda: "training stopped at step" in tmux.screen("run") and tmux.screen("run"),
        30,
        "how the run ended",
        lambda: tmux.screen("run"),
    )
    assert f"rundir{run}" in "".join(ended.split())  # the path may wrap
    assert f"stopped at step {status(run).step:,};" in ended
