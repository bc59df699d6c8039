"""Answers that hold: stop ends a loop that swallows exceptions, a save is answered by the
file on disk, a model with a legitimately non-finite buffer can be saved."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, wait_for, write_script
from jobs import make_trainer, tiny_job
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from optitui.store import commands
from optitui.store.client import send
from optitui.store.layout import RunPaths
from optitui.store.reader import RunReader
from optitui.trainer.core import checkpoint
from optitui.trainer.core.job import Job
from optitui.trainer.probe.watch import StopTraining, watch

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


# -- saves: a legitimately non-finite buffer, and answers that follow the file -------------
class Masked(nn.Module):
    """A tiny causal-attention-like model whose mask buffer is -inf above the diagonal."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.out = nn.Linear(8, 1)
        self.register_buffer("mask", torch.triu(torch.full((4, 4), float("-inf")), diagonal=1))
        self.norm = nn.BatchNorm1d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, 4, 8)
        h = self.proj(x)
        att = torch.softmax(h @ h.transpose(1, 2) / 8 + self.mask, dim=-1) @ h
        return self.out(self.norm(att.mean(1)))


def masked_job(**kw: Any) -> Job:
    torch.manual_seed(0)
    model = Masked()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 4, 8, generator=g)
    y = x.sum((1, 2)).unsqueeze(1) / 8
    data = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return Job(model=model, optimizer=opt, train_data=data, loss_fn=nn.functional.mse_loss, **kw)


def test_a_model_with_an_inf_mask_is_saved_on_demand_and_as_the_best(
    tmp_path: Path, run_in_thread: Any
) -> None:
    t = make_trainer(tmp_path, masked_job(val_data=[(torch.randn(8, 4, 8), torch.zeros(8, 1))]))
    t.job.val_every = 10
    run_in_thread(t)
    reader = RunReader(t.paths.root)
    wait_for(lambda: reader.status().step > 20, what="steps")
    out = send(t.paths, "save", {"tag": "mine"}).outcome
    assert out is not None and out.applied, out
    listed = {m.id: m for m in checkpoint.listing(t.paths.checkpoints)}
    (mine,) = [m for m in listed.values() if m.tag == "mine"]
    assert out.reason == f"checkpoint {mine.id}" and mine.step == out.step
    assert any(m.reason == "best" for m in listed.values())  # the periodic best save too
    assert not [e for e in reader.events() if "not written" in e.message]
    # and it comes back: the mask is still -inf where it was
    done = send(t.paths, "restore", {"id": mine.id}).outcome
    assert done is not None and done.applied, done
    assert torch.isinf(t.model.mask).sum() == 6  # type: ignore[operator]


def test_what_training_makes_non_finite_is_still_refused(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, masked_job())
    t._start()
    with torch.no_grad():  # a NaN where the mask held -inf, and in a BatchNorm statistic
        t.model.mask[0, 3] = float("nan")  # type: ignore[index]
    t.save_checkpoint("manual")
    with torch.no_grad():
        t.model.mask[0, 3] = float("-inf")  # type: ignore[index]
        t.model.norm.running_var[0] = float("inf")  # type: ignore[index]
    t.save_checkpoint("manual")
    assert t.saver is not None
    t.saver.wait()
    assert checkpoint.listing(t.paths.checkpoints) == []
    t.recorder.close()
    with RunReader(t.paths.root) as r:
        refused = [e.message for e in r.events() if "not written" in e.message]
    assert len(refused) == 2
    assert "mask holds NaN" in refused[0] and "norm.running_var holds NaN or inf" in refused[1]


def test_a_save_that_cannot_be_written_is_rejected_with_the_reason(
    tmp_path: Path, run_in_thread: Any
) -> None:
    t = make_trainer(tmp_path, tiny_job())
    run_in_thread(t)
    reader = RunReader(t.paths.root)
    wait_for(lambda: reader.status().step > 5, what="steps")
    t.paths.checkpoints.rename(tmp_path / "moved-away")  # the folder is gone
    out = send(t.paths, "save", {"tag": "lost"}).outcome
    assert out is not None and not out.applied
    assert "not written" in str(out.reason) and "No such file or directory" in str(out.reason)
    (tmp_path / "moved-away").rename(t.paths.checkpoints)
    if os.geteuid() != 0:  # root writes anywhere
        t.paths.checkpoints.chmod(0o500)
        try:
            out = send(t.paths, "save").outcome
        finally:
            t.paths.checkpoints.chmod(0o700)
        assert out is not None and not out.applied and "Permission denied" in str(out.reason)
    out = send(t.paths, "save").outcome  # and once it can be written, it is
    assert out is not None and out.applied
    assert str(out.reason).split()[-1] in [m.id for m in checkpoint.listing(t.paths.checkpoints)]
