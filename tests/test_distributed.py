"""Two ranks under torchrun (gloo, CPU): every command lands at the same step on both."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import wait_for, write_script

from optitui.store import client
from optitui.store.client import NoAnswer
from optitui.store.layout import RunPaths
from optitui.store.reader import RunReader

SCRIPT = """
import atexit, json, os, time
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import optitui

OUT = os.environ["OPTITUI_TEST_OUT"]
LOG = []

def setup(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 1)).to(device)
    opt = torch.optim.AdamW([
        {"params": model[0].parameters(), "name": "body", "lr": 0.01},
        {"params": model[3].parameters(), "name": "head", "lr": 0.004},
    ])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=400)

    def step_fn(net, batch):
        LOG.append([g["lr"] for g in opt.param_groups])
        time.sleep(0.02)
        xb, yb = batch
        return nn.functional.mse_loss(net(xb), yb)

    def dump():
        rank = int(os.environ.get("RANK", "0"))  # the group is gone by exit time
        with open(os.path.join(OUT, f"lrs-{rank}.json"), "w") as f:
            json.dump(LOG, f)
        torch.save(model.state_dict(), os.path.join(OUT, f"params-{rank}.pt"))

    atexit.register(dump)
    return optitui.Job(model=model, optimizer=opt, scheduler=sched, step_fn=step_fn,
                       train_data=DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True,
                                             generator=g),
                       max_steps=300, sync_every=4)
"""


def _commands(rnd: random.Random) -> list[tuple[str, dict[str, Any]]]:
    edits: list[tuple[str, dict[str, Any]]] = [
        ("set", {"values": {"lr": 0.02}, "group": "body"}),
        ("set", {"values": {"lr": 0.003}, "group": 1, "ramp": 10}),
        ("scale-lr", {"factor": 0.5}),
        ("scale-lr", {"factor": 1.5, "group": 0, "ramp": 6}),
        ("set", {"values": {"weight_decay": 0.05, "betas": [0.8, 0.99]}}),
        ("set", {"values": {"lr": 0.008}}),
        ("clip", {"max_norm": 1.0}),
        ("lookahead", {"enabled": True, "k": 5, "alpha": 0.5}),
        ("scheduler", {"action": "detach"}),
        ("set", {"values": {"lr": 0.006}, "group": "head"}),
        ("scheduler", {"action": "attach"}),
    ]
    rnd.shuffle(edits)
    plan = [*edits[:4], ("pause", {}), ("step", {"n": 3}), ("resume", {}), *edits[4:6]]
    plan += [("save", {"tag": "mid"}), ("lr-find", {"num_iter": 40})]
    plan += [("lr-find-apply", {"id": "latest", "rule": "valley"})]
    plan += [*edits[6:9], ("freeze", {"group": "head"}), ("unfreeze", {"group": "head"})]
    plan += [
        ("restore", {"id": "latest"}),
        ("reset-state", {"group": 0}),
        ("scale-lr", {"factor": 0.9}),
        *edits[9:],
    ]
    return plan


@pytest.mark.slow
def test_two_ranks_stay_in_lockstep(tmp_path: Path) -> None:
    script = write_script(tmp_path, SCRIPT)
    run_dir = tmp_path / "run"
    env = {**os.environ, "OPTITUI_TEST_OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optitui",
            "run",
            str(script),
            "--headless",
            "--device",
            "cpu",
            "--nproc-per-node",
            "2",
            "--run-dir",
            str(run_dir),
            "--seed",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    applied: list[str] = []
    rejected: list[str] = []
    try:
        wait_for(lambda: (run_dir / "store.sqlite").exists(), 120, "store")
        reader = RunReader(run_dir)
        wait_for(lambda: reader.status().step > 5, 120, "training")
        for kind, args in _commands(random.Random(0)):
            try:
                sent = client.send(RunPaths(run_dir), kind, args, timeout=60)
            except NoAnswer as exc:
                rejected.append(f"{kind}: no answer: {exc}")
                break
            assert sent.outcome is not None
            (applied if sent.outcome.applied else rejected).append(f"{kind}: {sent.outcome.reason}")
            if kind == "lr-find":
                wait_for(
                    lambda: any(t.status != "running" for t in reader.range_tests()),
                    60,
                    "range test",
                )
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    print(f"\n{len(applied)} commands applied, {len(rejected)} rejected: {rejected}")
    assert len(applied) >= 20, (applied, rejected)
    logs = [json.loads((tmp_path / f"lrs-{r}.json").read_text()) for r in (0, 1)]
    assert len(logs[0]) >= 300 and logs[0] == logs[1]  # every step, every group, both ranks
    assert len({tuple(x) for x in logs[0]}) > 20  # and the lrs really moved
    p0, p1 = (torch.load(tmp_path / f"params-{r}.pt", weights_only=True) for r in (0, 1))
    assert p0.keys() == p1.keys() and all(torch.equal(p0[k], p1[k]) for k in p0)
    with RunReader(run_dir) as r:
        st = r.status()
        assert st.state == "finished" and st.step == 300
        ranks = r.meta(refresh=True)["ranks"]
        assert [x["rank"] for x in ranks] == [0, 1] and all(x["steps_per_s"] > 0 for x in ranks)
        assert r.meta()["world_size"] == 2
        (test,) = r.range_tests()
        assert test.status == "done"


DYING = """
import os
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import optitui

def setup(device):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(512, 8, generator=g), torch.randn(512, 1, generator=g)
    model = nn.Linear(8, 1).to(device)
    calls = {"n": 0}

    def step_fn(net, batch):
        calls["n"] += 1
        if os.environ.get("RANK") == "1" and calls["n"] == 40:
            raise RuntimeError("rank 1 lost its data shard")
        xb, yb = batch
        return nn.functional.mse_loss(net(xb), yb)

    return optitui.Job(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                       train_data=DataLoader(TensorDataset(x, y), batch_size=16),
                       step_fn=step_fn, sync_every=4)
"""


@pytest.mark.slow
def test_a_dying_rank_ends_the_run_without_hanging(tmp_path: Path) -> None:
    script = write_script(tmp_path, DYING)
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "optitui",
            "run",
            str(script),
            "--headless",
            "--device",
            "cpu",
            "--nproc-per-node",
            "2",
            "--run-dir",
            str(run_dir),
            "--dist-timeout",
            "15",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "rank 1 lost its data shard" in out  # which rank, and why
    with RunReader(run_dir) as r:
        st = r.status()
        assert st.state in ("failed", "crashed", "stopped"), st
        assert st.step < 100


def test_a_command_arriving_during_a_meeting_waits_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rank 0 applies exactly what it broadcast: a command its inbox took while the
    ranks were meeting is applied at the next meeting, never by rank 0 alone."""
    import torch.distributed as torch_dist
    from jobs import command, make_trainer, tiny_job

    from optitui.trainer.core import dist

    store = torch_dist.HashStore()
    torch_dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        info = dist.DistInfo(rank=0, world=1, local_rank=0, backend="gloo")
        trainer = make_trainer(tmp_path, tiny_job(), dist_info=info)
        early, late = command("scale-lr", factor=0.5), command("scale-lr", factor=0.25)
        real = dist.broadcast_object

        def meeting(obj: Any, device: torch.device) -> Any:
            trainer.commands.append(late)  # the inbox thread, mid-broadcast
            return real(obj, device)

        monkeypatch.setattr(dist, "broadcast_object", meeting)
        trainer.commands.append(early)
        lr = trainer.optimizer.param_groups[0]["lr"]
        trainer._sync()
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr * 0.5)
        assert list(trainer.commands) == [late]  # queued, not applied
        monkeypatch.setattr(dist, "broadcast_object", real)
        trainer._sync()
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr * 0.125)
        assert not trainer.commands
        trainer.recorder.close()
    finally:
        torch_dist.destroy_process_group()


OPTITUI_RUN = (sys.executable, "-m", "optitui", "run", "--headless", "--device", "cpu", "--quiet")
METRICS = """
import atexit, json, os
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import optitui

OUT = os.environ["OPTITUI_TEST_OUT"]
RANK = int(os.environ["RANK"])
ACC = []

def setup(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step_fn(net, batch):
        xb, yb = batch
        out = net(xb)
        acc = ((out > 0) == (yb > 0)).float().mean()
        if torch.is_grad_enabled():  # not a validation
            ACC.append(float(acc))  # this rank's own values, read here for the test
        return {"loss": nn.functional.mse_loss(out, yb), "acc": acc, "rank": float(RANK),
                "who": torch.tensor(float(RANK))}

    def dump():
        with open(os.path.join(OUT, f"acc-{RANK}.json"), "w") as f:
            json.dump(ACC, f)

    atexit.register(dump)
    return optitui.Job(model=model, optimizer=opt, step_fn=step_fn,
                       train_data=DataLoader(TensorDataset(x, y), batch_size=32),
                       val_data=[(x[:64], y[:64])], val_every=8, max_steps=24, sync_every=4,
                       health_every=4)
"""


@pytest.mark.slow
def test_user_metrics_of_two_ranks_are_recorded(tmp_path: Path) -> None:
    """Per step: rank 0's own values; validation: the mean over ranks; health too."""
    script = write_script(tmp_path, METRICS)
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPTITUI_TEST_OUT": str(tmp_path)}
    proc = subprocess.run(
        [*OPTITUI_RUN, str(script), "--nproc-per-node", "2", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    acc = [json.loads((tmp_path / f"acc-{r}.json").read_text()) for r in (0, 1)]
    assert len(acc[0]) == len(acc[1]) == 24 and acc[0] != acc[1]  # each rank its own shard
    with RunReader(run_dir) as r:
        assert r.status().state == "finished"
        cols = r.read_metrics().columns
        logged = r.read_logged().columns
    assert list(cols["user:acc"]) == pytest.approx(acc[0])  # rank 0's
    assert list(cols["user:rank"]) == [0.0] * 24
    assert list(logged["step"]) == [8, 16, 24]
    assert list(logged["user:val_who"]) == [0.5] * 3  # the mean over ranks 0 and 1
    assert list(logged["user:val_rank"]) == [0.5] * 3
    ratio = list(cols["update_ratio/0"])
    assert [v > 0 for v in ratio[::4]] == [True] * 6
