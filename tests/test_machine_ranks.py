"""Under torchrun every rank samples its own process and device, and rank 0 records each
rank's series under its rank (two gloo ranks on the CPU)."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import write_script
from ranks import steer

from optitui.store import system
from optitui.store.reader import RunReader

SCRIPT = """
import os, time
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import optitui

# rank 1 holds 256 MiB more than rank 0: its own series must show it
BALLAST = bytearray(256 * 2**20) if os.environ.get("RANK") == "1" else None
if BALLAST is not None:
    BALLAST[::4096] = b"x" * len(BALLAST[::4096])  # touched, so resident

def setup(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g)
    model = nn.Linear(8, 1).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step_fn(net, batch):
        time.sleep(0.02)
        xb, yb = batch
        return nn.functional.mse_loss(net(xb), yb)

    return optitui.Job(model=model, optimizer=opt, step_fn=step_fn,
                       train_data=DataLoader(TensorDataset(x, y), batch_size=32),
                       max_steps=80, sync_every=4, system_every=0.2)
"""


def test_each_rank_records_its_own_machine_series(tmp_path: Path) -> None:
    script = write_script(tmp_path, SCRIPT)
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "optitui", "run", str(script), "--headless"]
    argv += ["--device", "cpu", "--nproc-per-node", "2", "--run-dir", str(run_dir)]
    got = steer(argv, run_dir, [])
    assert got.returncode == 0, got.output[-3000:]
    with RunReader(run_dir) as reader:
        series = system.read(reader.conn)
        meta = reader.meta()
    assert sorted(series.ranks) == [0, 1]
    r0, r1 = series.ranks[0].columns, series.ranks[1].columns
    assert series.ranks[0].length >= 5 and series.ranks[1].length >= 5
    # each rank its own process: rank 1's ballast shows in its series only
    assert min(r1["rss_bytes"]) > max(r0["rss_bytes"]) + 128 * 2**20
    assert list(r1["time"]) == sorted(r1["time"]) and max(r1["step"]) > 0
    assert list(r1["step"]) == sorted(r1["step"])
    by_rank = {r["rank"]: r for r in meta["ranks"]}
    assert by_rank[1]["system"]["rss_bytes"] > by_rank[0]["system"]["rss_bytes"]
    assert meta[system.META_KEY]["rank"] == 0
