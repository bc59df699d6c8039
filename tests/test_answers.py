"""Answers that hold: stop ends a loop that swallows exceptions, a save is answered by the
file on disk, a model with a legitimately non-finite buffer can be saved."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, wait_for, write_script
from torch import nn

from optitui.store import commands
from optitui.store.client import send
from optitui.store.layout import RunPaths
from optitui.store.reader import RunReader
from optitui.trainer.probe import StopTraining, watch

OPTITUI_RUN = (sys.executable, "-m", "optitui", "run")
SWALLOWING_LOOP = """
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(64, 4)
y = x.sum(1, keepdim=True)
for step in range(10**9):
    try:  # skips bad batches, as many scripts do
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    except Exception as exc:
        print(f"skipped batch: {type(exc).__name__}: {exc}", flush=True)
        continue
print("after the loop")
"""


def test_stop_is_not_swallowed_by_except_exception_in_zero_code_mode(tmp_path: Path) -> None:
    script = write_script(tmp_path, SWALLOWING_LOOP)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [*OPTITUI_RUN, str(script), "--headless", "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        wait_for(lambda: RunPaths(run_dir).exists(), 60, "the store")
        reader = RunReader(run_dir)
        wait_for(lambda: reader.status().step > 20, 60, "steps")
        out = send(RunPaths(run_dir), "stop").outcome
        assert out is not None and out.applied
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "skipped batch" not in stdout and "after the loop" not in stdout
    st = reader.status()
    assert (st.state, st.message) == ("stopped", "stop command")
    assert st.step == out.step  # no step after the one the stop was answered at


def test_stop_is_not_swallowed_by_except_exception_in_watch_mode(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(64, 4)
    y = x.sum(1, keepdim=True)
    probe = watch(opt, model, run_dir=tmp_path / "run")
    assert probe.trainer is not None
    skipped: list[str] = []
    with pytest.raises(StopTraining, match="stop command"):
        for i in range(2000):
            try:
                loss = nn.functional.mse_loss(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                probe.step(loss)  # ignores should_stop: the next call raises
            except Exception as exc:
                skipped.append(f"{type(exc).__name__}: {exc}")
                continue
            if i == 10:
                commands.send(probe.trainer.paths, "stop")
            time.sleep(0.005)
    stopped_at = probe.steps
    probe.close(StopTraining("stop command"))
    assert not skipped
    with RunReader(tmp_path / "run") as r:
        st = r.status()
        assert st.state == "stopped" and st.step == stopped_at < 2000
