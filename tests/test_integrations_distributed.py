"""Own loops, Lightning and the HF Trainer under torch.distributed (2 gloo ranks):
commands sent through the run store land at the same step on every rank."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, write_script
from ranks import RECORDER, TORCHRUN, rank_logs, same_params, steer

from optitui.store.reader import RunReader

pytestmark = pytest.mark.slow

OWN_LOOP = (
    RECORDER
    + """
import sys, time
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
import optitui

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = DDP(nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.1), nn.Linear(16, 1)))
opt = torch.optim.SGD([
    {"params": model.module[0].parameters(), "name": "body"},
    {"params": model.module[2].parameters(), "name": "head", "lr": 0.01},
], lr=0.05, momentum=0.9)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.5)
dump = record_lrs(opt, sys.argv[1])
probe = optitui.watch(opt, model=model, scheduler=sched, sync_every=4)
g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
for _ in range(5000):
    x = torch.randn(16, 8, generator=g)
    loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
    opt.zero_grad()
    loss.backward()
    opt.step()
    probe.step(loss)
    sched.step()
    if probe.should_stop:
        break
    time.sleep(0.01)
dump(model)
"""
)

PLAN: list[tuple[str, dict[str, Any]]] = [
    ("set", {"values": {"lr": 0.02}, "group": 0}),
    ("pause", {}),
    ("step", {"n": 3}),
    ("resume", {}),
    ("scale-lr", {"factor": 0.5}),
    ("save", {"tag": "mid"}),
    ("checkpoint-policy", {"every": 10}),  # periodic saves: a framework's are collective
    ("lr-find", {"num_iter": 24}),
    ("lr-find-apply", {"id": "latest", "rule": "steep"}),
    ("set", {"values": {"momentum": 0.8}}),
    ("set", {"values": {"lr": 0.003}, "group": 1, "ramp": 8}),
    ("restore", {"id": "latest"}),
    ("scale-lr", {"factor": 0.7}),
    ("checkpoint-policy", {"every": 0}),
    ("stop", {}),
]


def _check_lockstep(out: Path, got: Any, least: int) -> list[list[float]]:
    assert got.returncode == 0, got.output[-4000:]
    print(f"\napplied: {got.applied}\nrejected: {got.rejected}")
    assert len(got.applied) >= least, (got.applied, got.rejected)
    log0, log1 = rank_logs(out)
    assert len(log0) > 20 and log0 == log1  # every step, every group, on both ranks
    assert same_params(out)
    return log0


def _check_steered_store(run_dir: Path, mode: str) -> None:
    """What a PLAN run leaves in the store: stopped, both ranks, a finished range test,
    and the save and the restore on record."""
    with RunReader(run_dir) as r:
        st = r.status()
        assert st.state == "stopped", st
        meta = r.meta(refresh=True)
        assert meta["probe"]["mode"] == mode and meta["world_size"] == 2
        assert meta["sync_every"] == 4 and [x["rank"] for x in meta["ranks"]] == [0, 1]
        (test,) = r.range_tests()
        assert test.status == "done" and len(test.lrs) > 5
        marks = [e.data.get("marker") for e in r.events() if e.data]
        assert "save" in marks and "restore" in marks


def test_an_own_loop_under_torchrun_takes_every_command_on_every_rank(tmp_path: Path) -> None:
    script = write_script(tmp_path, OWN_LOOP, name="own_loop.py")
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "optitui", "run", str(script), "--headless"]
    argv += ["--nproc-per-node", "2", "--run-dir", str(run_dir), "--", str(tmp_path)]
    got = steer(argv, run_dir, PLAN)
    log = _check_lockstep(tmp_path, got, least=len(PLAN) - 1)
    assert len({tuple(x) for x in log}) > 8  # the lrs really moved
    assert 0.02 in {row[0] for row in log}  # the first edit, as the steps used it
    _check_steered_store(run_dir, "watch")
    with RunReader(run_dir) as r:  # no limit says commands act on rank 0 only
        assert "rank 0 only" not in str(r.meta()["probe"]["limits"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("run")) == ["run"]


LIGHTNING = (
    RECORDER
    + """
import sys, time
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import lightning.pytorch as pl
from optitui.integrations.lightning import OptituiCallback


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        time.sleep(0.01)
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        opt = torch.optim.SGD([
            {"params": self.net[0].parameters(), "name": "body"},
            {"params": self.net[2].parameters(), "name": "head", "lr": 0.01},
        ], lr=0.05, momentum=0.9)
        self.dump = record_lrs(opt, sys.argv[2])
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=40, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


pl.seed_everything(0)
g = torch.Generator().manual_seed(0)
x = torch.randn(8192, 8, generator=g)
data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16, shuffle=True)
model = Tiny()
trainer = pl.Trainer(
    max_steps=5000, strategy="ddp", accelerator="cpu", devices=2,
    callbacks=[OptituiCallback(sys.argv[1], sync_every=4)], logger=False,
    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
)
trainer.fit(model, data)
model.dump(model)
"""
)


def test_lightning_ddp_takes_every_command_on_every_rank(tmp_path: Path) -> None:
    pytest.importorskip("lightning.pytorch")
    script = write_script(tmp_path, LIGHTNING, name="fit.py")
    run_dir = tmp_path / "run"
    got = steer([*TORCHRUN, str(script), str(run_dir), str(tmp_path)], run_dir, PLAN)
    log = _check_lockstep(tmp_path, got, least=len(PLAN) - 1)
    assert 0.02 in {row[0] for row in log}
    _check_steered_store(run_dir, "lightning")
    assert len(list((run_dir / "checkpoints").glob("*-mid.ckpt"))) == 1  # rank 0 wrote it
    assert len(list((run_dir / "checkpoints").glob("*periodic*.ckpt"))) >= 2


TRANSFORMERS = (
    RECORDER
    + """
import os, sys, time
import torch
import transformers
from optitui.integrations.transformers import OptituiCallback


class Record(transformers.TrainerCallback):
    def on_train_begin(self, args, state, control, **kw):
        self.dump = record_lrs(kw["optimizer"].optimizer, sys.argv[2])

    def on_step_end(self, args, state, control, **kw):
        time.sleep(0.01)

    def on_train_end(self, args, state, control, **kw):
        self.dump(kw["model"])


cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32,
                              bos_token_id=0, eos_token_id=0)
torch.manual_seed(0)
model = transformers.GPT2LMHeadModel(cfg)
g = torch.Generator().manual_seed(0)
rows = [torch.randint(0, 64, (16,), generator=g) for _ in range(4096)]
args = transformers.TrainingArguments(
    output_dir=os.path.join(sys.argv[2], "out"), max_steps=5000, per_device_train_batch_size=4,
    learning_rate=1e-3, warmup_steps=10, lr_scheduler_type="linear", save_strategy="no",
    logging_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
    dataloader_num_workers=0, ddp_backend="gloo", seed=0,
)
trainer = transformers.Trainer(
    model=model, args=args, train_dataset=[{"input_ids": r, "labels": r} for r in rows],
    callbacks=[OptituiCallback(sys.argv[1], sync_every=4), Record()],
)
trainer.train()
"""
)


def test_hf_trainer_under_torchrun_takes_every_command_on_every_rank(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    script = write_script(tmp_path, TRANSFORMERS, name="hf.py")
    run_dir = tmp_path / "run"
    got = steer(
        [*TORCHRUN, str(script), str(run_dir), str(tmp_path)],
        run_dir,
        PLAN,
        env={"HF_HUB_OFFLINE": "1"},
    )
    log = _check_lockstep(tmp_path, got, least=len(PLAN) - 1)
    assert 0.02 in {row[0] for row in log}
    _check_steered_store(run_dir, "transformers")
    saved = list((tmp_path / "out").glob("checkpoint-*"))
    assert len(saved) >= 3 and all((f / "optitui.json").is_file() for f in saved)


def test_a_rank_that_raises_in_an_own_loop_ends_the_run(tmp_path: Path) -> None:
    """Its probe closes without waiting for the others, so nothing hangs."""
    body = OWN_LOOP.replace(
        "    probe.step(loss)\n",
        "    probe.step(loss)\n"
        "    if rank == 1 and probe.steps == 10:\n"
        "        raise RuntimeError('rank 1 lost its data shard')\n",
    )
    assert body != OWN_LOOP
    script = write_script(tmp_path, body, name="own_loop.py")
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "optitui", "run", str(script), "--headless"]
    argv += ["--nproc-per-node", "2", "--run-dir", str(run_dir), "--", str(tmp_path)]
    got = steer(argv, run_dir, [], start_timeout=60)
    assert got.returncode != 0
    assert "rank 1 lost its data shard" in got.output
    with RunReader(run_dir) as r:
        assert r.status().state in ("failed", "crashed"), r.status()


ZERO_CODE = """
import os, sys, time
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = DDP(nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
log = []
opt.register_step_pre_hook(lambda o, a, k: log.append([o.param_groups[0]["lr"]]))
g = torch.Generator().manual_seed(rank)
try:
    for _ in range(5000):
        x = torch.randn(16, 8, generator=g)
        loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
        time.sleep(0.01)
finally:  # a stop raises StopTraining out of opt.step()
    with open(os.path.join(sys.argv[1], f"lrs-{rank}.json"), "w") as f:
        f.write(repr(log).replace("'", '"'))
    torch.save(model.state_dict(), os.path.join(sys.argv[1], f"params-{rank}.pt"))
"""


def test_zero_code_mode_under_torchrun_steers_every_rank(tmp_path: Path) -> None:
    script = write_script(tmp_path, ZERO_CODE, name="plain.py")
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "optitui", "run", str(script), "--headless"]
    argv += ["--nproc-per-node", "2", "--run-dir", str(run_dir), "--", str(tmp_path)]
    plan: list[tuple[str, dict[str, Any]]] = [("set", {"values": {"lr": 0.05}}), ("stop", {})]
    got = steer(argv, run_dir, plan)
    log = _check_lockstep(tmp_path, got, least=2)
    assert log[0] == [0.01] and log[-1] == [0.05]
    with RunReader(run_dir) as r:
        assert r.status().state == "stopped"
        assert r.meta()["probe"]["mode"] == "zero-code" and r.meta()["world_size"] == 2


def test_the_ddp_sample_runs_under_optitui_run(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    run_dir = tmp_path / "run"
    sample = REPO / "sample_runs" / "own_loop_ddp.py"
    argv = [sys.executable, "-m", "optitui", "run", str(sample), "--headless"]
    argv += ["--nproc-per-node", "2", "--run-dir", str(run_dir), "--max-steps", "40"]
    got = steer(argv, run_dir, [])  # 40 steps end too soon to steer reliably
    assert got.returncode == 0, got.output[-3000:]
    with RunReader(run_dir) as r:
        st = r.status()
        assert st.state == "finished" and st.step == 40, st
        # samples/s counts both ranks' batches (32 each at the last flush)
        assert st.samples_per_s == pytest.approx(64 * (st.steps_per_s or 0), rel=1e-6)
        assert r.meta()["world_size"] == 2 and r.read_metrics().length == 40
        assert len(r.val()) >= 1  # rank 0's validation after the first epoch (24 steps)
