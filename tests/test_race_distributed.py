"""The race under torchrun (gloo, CPU, two ranks): both ranks run the same candidates on
their own shards, the curves are the mean over ranks, and the ranks stay in lockstep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import wait_for, write_script

from optitui.store import client
from optitui.store.layout import RunPaths
from optitui.store.reader import RunReader

SCRIPT = """
import atexit, json, os, time
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import optitui

OUT = os.environ["OPTITUI_TEST_OUT"]
LOSSES = []

def setup(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step_fn(net, batch):
        time.sleep(0.01)
        xb, yb = batch
        loss = nn.functional.mse_loss(net(xb), yb)
        LOSSES.append(loss.item())  # every call: the loop's steps and the race's
        return loss

    def dump():
        rank = int(os.environ.get("RANK", "0"))
        with open(os.path.join(OUT, f"losses-{rank}.json"), "w") as f:
            json.dump(LOSSES, f)
        torch.save(model.state_dict(), os.path.join(OUT, f"params-{rank}.pt"))

    atexit.register(dump)
    return optitui.Job(model=model, optimizer=opt, step_fn=step_fn,
                       train_data=DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True,
                                             generator=g),
                       max_steps=60, sync_every=4)
"""
STEPS = 6


@pytest.mark.slow
def test_two_ranks_race_the_same_candidates(tmp_path: Path) -> None:
    script = write_script(tmp_path, SCRIPT)
    run_dir = tmp_path / "run"
    env = {**os.environ, "OPTITUI_TEST_OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "optitui", "run", str(script), "--headless", "--device", "cpu"]
    cmd += ["--nproc-per-node", "2", "--run-dir", str(run_dir), "--seed", "0"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        wait_for(lambda: (run_dir / "store.sqlite").exists(), 120, "store")
        reader = RunReader(run_dir)
        wait_for(lambda: reader.status().step > 5, 120, "training")
        args = {"candidates": ["lr*0.5", "momentum=0.5"], "steps": STEPS}
        sent = client.send(RunPaths(run_dir), "race", args, timeout=60)
        assert sent.outcome is not None and sent.outcome.applied, sent.outcome
        wait_for(lambda: [r for r in reader.races() if r.status != "running"], 60, "the race")
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    with RunReader(run_dir) as r:
        assert r.status().state == "finished" and r.status().step == 60
        (race,) = r.races()
    assert race.status == "done" and race.data["states"] == ["done"] * 3, race.message
    assert race.step % 4 == 0  # taken at a meeting of the ranks
    logs = [json.loads((tmp_path / f"losses-{k}.json").read_text()) for k in (0, 1)]
    assert len(logs[0]) == len(logs[1]) == 60 + 3 * STEPS  # both ranks ran every candidate
    at = race.step  # the loop's calls before the race, then the race's
    for i, curve in enumerate(race.data["losses"]):
        ranks = [log[at + i * STEPS : at + (i + 1) * STEPS] for log in logs]
        assert ranks[0] != ranks[1]  # each rank its own shard
        mean = [(a + b) / 2 for a, b in zip(*ranks, strict=True)]
        assert curve == pytest.approx(mean, rel=1e-5)  # the curve: the mean over ranks
    p0, p1 = (torch.load(tmp_path / f"params-{k}.pt", weights_only=True) for k in (0, 1))
    assert all(torch.equal(p0[k], p1[k]) for k in p0)  # still in lockstep after it
