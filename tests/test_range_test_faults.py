"""The range test under faults: a signal ends it at once, `send --timeout` is honoured, its
report takes bounded time and memory, and a SIGKILL's leftovers are cleaned or marked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_SCRIPT, start_headless, wait_for, write_script
from jobs import make_trainer, tiny_job

from optitui.cli import main
from optitui.store import client
from optitui.store.reader import RunReader

#: the tiny job at a few hundred steps a second: a 3,000-step range test takes 15 s+
SLOW = TINY_SCRIPT.replace(
    "import optitui\n",
    "import optitui\nimport time\n\n"
    "def slow_mse(out, y):\n    time.sleep(0.005)\n    return nn.functional.mse_loss(out, y)\n",
).replace("loss_fn=nn.functional.mse_loss, STEP_DELAY", "loss_fn=slow_mse")
LONG_TEST = {"num_iter": 3000, "start_lr": 1e-5, "end_lr": 1e-4}


def _running_test(reader: RunReader, points: int = 3) -> Any:
    def found() -> Any:
        tests = reader.range_tests()
        return tests[-1] if tests and len(tests[-1].lrs) >= points else None

    return wait_for(found, 60, "a range test under way")


def test_sigterm_ends_a_range_test_and_the_run_within_a_step(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc, reader = start_headless(write_script(tmp_path, SLOW), run_dir, min_step=3)
    try:
        out = client.send(reader.paths, "lr-find", LONG_TEST, timeout=30).outcome
        assert out is not None and out.applied
        before = _running_test(reader)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    (test,) = reader.range_tests()
    assert test.status == "cancelled" and test.message is not None
    assert "the run is stopping" in test.message
    st = reader.status()
    assert st.state == "stopped" and st.step == before.step  # no step after the test
    assert took < 10, took  # the whole test would take 15 s and more


def test_send_lr_find_honours_its_timeout(
    tmp_path: Path, run_in_thread: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    job = tiny_job()
    loss = job.loss_fn
    assert loss is not None

    def slow(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        time.sleep(0.005)
        return loss(out, y)

    job.loss_fn = slow
    trainer = make_trainer(tmp_path, job, flush_every=8)
    run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    wait_for(lambda: reader.status().step > 3, what="training")
    words = [f"{k}={v}" for k, v in LONG_TEST.items()]
    t0 = time.monotonic()
    code = main(["send", str(trainer.paths.root), "lr-find", *words, "--timeout", "2"])
    took = time.monotonic() - t0
    assert code == 3 and took < 6, (code, took)
    err = capsys.readouterr().err
    assert "no report within --timeout 2 s" in err and "goes on in the job" in err


REPORT = """
import math, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from optitui.lrfind_report import report
lrs = [1e-3 * (1e33) ** (i / 9) for i in range(10)]
losses = [(1 + lr) ** 2 for lr in lrs]  # up to 1e60: finite, far off any screen
t0 = time.monotonic()
out = report({"id": "x", "status": "done", "message": None, "step": 0, "lrs": lrs,
              "losses": losses, "smoothed": losses, "suggestions": [
                  {"rule": "steep", "lr": lrs[8], "index": 8, "note": "", "factor": 1.0}]})
print(round(time.monotonic() - t0, 3), "LR range test" in out, len(out) < 20000)
"""


def test_a_report_of_an_exploding_curve_is_bounded(tmp_path: Path) -> None:
    """The range test's report (printed by `optitui lr-find` and `send ... lr-find`) of a
    sweep from 1e-3 to 1e30: drawn in bounded time and memory (1 GB, 30 s at most)."""
    out = subprocess.run([sys.executable, "-c", REPORT], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr[-2000:]
    took, drawn, small = out.stdout.split()
    assert float(took) < 5 and drawn == "True" and small == "True"


def test_a_killed_range_test_is_marked_and_its_file_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    script = write_script(tmp_path, SLOW)
    proc, reader = start_headless(script, run_dir, min_step=3)
    try:
        saved = client.send(reader.paths, "save", {"tag": "before"}, timeout=30).outcome
        assert saved is not None and saved.applied
        sent = client.send(reader.paths, "lr-find", {**LONG_TEST, "to_disk": True}, timeout=30)
        assert sent.outcome is not None and sent.outcome.applied
        _running_test(reader)
        leftover = run_dir / f".lrfind-{sent.id}.pt"
        assert leftover.is_file()
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # marked: a test whose job died reads as failed, never "running" forever
    (test,) = reader.range_tests()
    assert test.status == "failed" and test.message == "the job ended during the test"
    stray = run_dir / "checkpoints" / ".step00000009-manual-abcd.pt.0123abcd.tmp"
    stray.write_bytes(b"half a checkpoint")
    mine = run_dir / "notes.txt"
    mine.write_text("the user's own file")
    # attached: the leftovers of our own go (the dashboard itself is not started here)
    monkeypatch.setattr("optitui.cli.attach.has_terminal", lambda: True)

    class NoScreen:
        return_code = 0

        def run(self) -> None:
            pass

    monkeypatch.setattr("optitui.tui.app.build_app", lambda *a, **k: NoScreen())
    assert main(["attach", str(run_dir)]) == 0
    assert not leftover.exists() and not stray.exists() and mine.exists()
    assert (
        json.loads(
            (run_dir / "checkpoints")
            .joinpath(
                next(p.name for p in (run_dir / "checkpoints").iterdir() if p.suffix == ".json")
            )
            .read_text()
        )["tag"]
        == "before"
    )  # the complete checkpoint stays
