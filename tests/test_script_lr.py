"""Scripts that write the lr themselves (nanoGPT's ``lr = get_lr(it)``): an edit is a
multiplier on the script's own values, in zero-code mode, with ``optitui.watch``, in a
``setup()`` job whose step_fn writes the lr, and composed with ramps and the range test."""

from __future__ import annotations

import math
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import REPO, wait_for
from jobs import make_trainer, tiny_job
from torch import nn

from optitui.store.client import send
from optitui.store.layout import RunPaths
from optitui.store.reader import RunReader
from optitui.trainer.probe.watch import watch

OPTITUI_RUN = (sys.executable, "-m", "optitui", "run")
NANOGPT = Path(__file__).parent / "public" / "nanogpt"
# nanoGPT's own command-line config: a tiny model on the CPU, a short cosine schedule
CONFIG = {"warmup_iters": 10, "lr_decay_iters": 400, "learning_rate": 1e-2, "min_lr": 1e-3}
ARGS = [
    "--dataset=gen",
    "--device=cpu",
    "--compile=False",
    "--dtype=float32",
    "--n_layer=1",
    "--n_head=2",
    "--n_embd=32",
    "--block_size=16",
    "--batch_size=4",
    "--gradient_accumulation_steps=1",
    "--eval_interval=100000",
    "--eval_iters=1",
    "--log_interval=1000",
    "--max_iters=100000",
    "--always_save_checkpoint=False",
    *(f"--{k}={v}" for k, v in CONFIG.items()),
]


def get_lr(it: int) -> float:
    """nanoGPT's schedule with CONFIG, as its train.py computes it."""
    lr, low = CONFIG["learning_rate"], CONFIG["min_lr"]
    warm, decay = CONFIG["warmup_iters"], CONFIG["lr_decay_iters"]
    if it < warm:
        return lr * (it + 1) / (warm + 1)
    if it > decay:
        return low
    coeff = 0.5 * (1.0 + math.cos(math.pi * (it - warm) / (decay - warm)))
    return low + coeff * (lr - low)


def nanogpt_dir(tmp_path: Path) -> Path:
    """nanoGPT's train.py, model.py and configurator.py as published, with generated tokens
    where it reads data/<dataset>/{train,val}.bin and meta.pkl."""
    work = tmp_path / "nanogpt"
    shutil.copytree(NANOGPT, work)
    data = work / "data" / "gen"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tokens = np.tile(rng.integers(0, 64, size=97), 100).astype(np.uint16)
    tokens.tofile(data / "train.bin")
    tokens[:2000].tofile(data / "val.bin")
    (data / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": 64}))
    return work


def test_nanogpt_train_py_takes_edits_as_multipliers_on_its_own_schedule(
    tmp_path: Path,
) -> None:
    work = nanogpt_dir(tmp_path)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [*OPTITUI_RUN, "train.py", "--headless", "--run-dir", str(run_dir), "--", *ARGS],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    paths = RunPaths(run_dir)
    try:
        wait_for(lambda: paths.exists(), 60, "the store")
        reader = RunReader(run_dir)
        wait_for(lambda: reader.status().step > 15, 60, "steps")
        doubled = send(paths, "scale-lr", {"factor": 2.0}).outcome
        assert doubled is not None and doubled.applied
        assert "the script writes the lr itself" in str(doubled.reason)
        wait_for(lambda: reader.status().step > doubled.step + 40, 60, "steps after it")
        fixed = send(paths, "set", {"values": {"lr": 0.003}}).outcome
        assert fixed is not None and fixed.applied
        wait_for(lambda: reader.status().step > fixed.step + 40, 60, "steps after it")
        assert send(paths, "stop").outcome.applied  # type: ignore[union-attr]
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lrs = reader.read_metrics().columns["lr/0"]
    s, t = doubled.step, fixed.step  # store step k is nanoGPT's iteration k - 1
    for k in range(s - 5, t + 1):  # from the first step after the answer: twice its own
        assert lrs[k - 1] == pytest.approx(get_lr(k - 1) * (2.0 if k > s else 1.0), rel=1e-12)
    m = 0.003 / get_lr(t)  # set lr=X: the next step uses X, the multiplier stays
    assert lrs[t] == pytest.approx(0.003, rel=1e-12)
    for k in range(t + 1, t + 40):
        assert lrs[k - 1] == pytest.approx(get_lr(k - 1) * m, rel=1e-12)
    assert reader.meta(refresh=True)["controls"]["lr_by_script"] is True
    _, groups = reader.groups()
    assert groups[0]["lr_by_script"] and groups[0]["lr_multiplier"] == pytest.approx(m)
    assert any("writes its lr itself" in e.message for e in reader.events())


# -- in-process: optitui.watch and setup() -----------------------------------------------
def schedule(step: int) -> float:
    """A warmup then cosine schedule, as LLM scripts compute it themselves."""
    if step < 10:
        return 0.01 * (step + 1) / 10
    return 0.001 + 0.5 * (1 + math.cos(math.pi * min(step - 10, 300) / 300)) * 0.009


class WritingLoop:
    """An own loop (with optitui.watch) that writes every group's lr each iteration."""

    def __init__(self, tmp_path: Path) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
        self.opt = torch.optim.AdamW(
            [{"params": self.model[0].parameters()}, {"params": self.model[2].parameters()}]
        )
        self.probe = watch(self.opt, self.model, run_dir=tmp_path / "run", flush_every=4)
        self.used: list[list[float]] = []  # the lrs every optimizer step really used
        self.opt.register_step_pre_hook(
            lambda o, a, k: self.used.append([g["lr"] for g in o.param_groups])
        )
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        g = torch.Generator().manual_seed(1)
        it = 0
        while not self.probe.should_stop:
            for group in self.opt.param_groups:
                group["lr"] = schedule(it)  # the script's own schedule, every iteration
            x = torch.randn(16, 8, generator=g)
            loss = nn.functional.mse_loss(self.model(x), x.sum(1, keepdim=True))
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.probe.step(loss)
            it += 1
            time.sleep(0.002)
        self.probe.close()


def test_watch_mode_edits_ramps_and_the_range_test_compose_with_the_script(
    tmp_path: Path,
) -> None:
    loop = WritingLoop(tmp_path)
    paths = loop.probe.trainer.paths  # type: ignore[union-attr]
    try:
        wait_for(lambda: loop.probe.steps > 12, what="steps")
        out = send(paths, "scale-lr", {"factor": 3.0, "group": 1}).outcome
        assert out is not None and out.applied, out
        s = out.step
        wait_for(lambda: len(loop.used) > s + 5, what="steps after the edit")
        for k in range(s - 3, s + 5):  # row k: the step after k steps
            assert loop.used[k][0] == pytest.approx(schedule(k), rel=1e-12)
            assert loop.used[k][1] == pytest.approx(schedule(k) * (3 if k >= s else 1))
        # a ramp of the multiplier, on top of the script's values
        ramp = send(paths, "scale-lr", {"factor": 2.0, "group": 0, "ramp": 4}).outcome
        assert ramp is not None and ramp.applied
        r = ramp.step
        wait_for(lambda: len(loop.used) > r + 6, what="steps of the ramp")
        for k, m in zip(range(r, r + 6), (1.25, 1.5, 1.75, 2, 2, 2), strict=True):
            assert loop.used[k][0] == pytest.approx(schedule(k) * m, rel=1e-12), k
        # the range test sweeps over the script's writes and puts the multipliers back
        test = send(paths, "lr-find", {"num_iter": 12, "group": 0}).outcome
        assert test is not None and test.applied
        with RunReader(paths.root) as reader:
            wait_for(
                lambda: reader.range_tests() and reader.range_tests()[0].status != "running",
                what="the test's end",
            )
            (done,) = reader.range_tests()
        assert done.status == "done", done.message
        t0 = test.step
        for j, lr in enumerate(done.lrs):  # the sweep's lr on group 0, the script's x3 on 1
            assert loop.used[t0 + j][0] == pytest.approx(lr)
            assert loop.used[t0 + j][1] == pytest.approx(schedule(t0 + j) * 3)
        end = t0 + len(done.lrs)
        wait_for(lambda: len(loop.used) > end + 3, what="steps after the test")
        for k in range(end, end + 3):
            assert loop.used[k] == pytest.approx([schedule(k) * 2, schedule(k) * 3])
    finally:
        send(paths, "stop")
        loop.thread.join(30)


def test_a_setup_job_whose_step_fn_writes_the_lr(tmp_path: Path, run_in_thread: Any) -> None:
    job = tiny_job("SGD", {"lr": 0.01, "momentum": 0.9})
    calls = [0]

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        for group in job.optimizer.param_groups:  # the step_fn keeps its own schedule
            group["lr"] = schedule(calls[0])
        calls[0] += 1
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    job.loss_fn, job.step_fn = None, step_fn
    used: list[float] = []
    job.optimizer.register_step_pre_hook(lambda o, a, k: used.append(o.param_groups[0]["lr"]))
    t = make_trainer(tmp_path, job, flush_every=4)
    run_in_thread(t)
    wait_for(lambda: t.step > 12, what="steps")
    out = send(t.paths, "set", {"values": {"lr": 0.05}, "group": "body"}).outcome
    assert out is not None and out.applied and "x" in str(out.reason)
    wait_for(lambda: len(used) > out.step + 5, what="steps after the edit")
    m = 0.05 / schedule(out.step)  # the next step uses 0.05; the multiplier stays on
    assert used[out.step] == pytest.approx(0.05, rel=1e-12)
    for k in range(out.step, out.step + 5):
        assert used[k] == pytest.approx(schedule(k) * m, rel=1e-12)
    # the trainer's own range test sweeps over the step_fn's writes, then puts them back
    test = send(t.paths, "lr-find", {"num_iter": 10}).outcome
    assert test is not None and test.applied
    with RunReader(t.paths.root) as r:
        wait_for(lambda: [x for x in r.range_tests() if x.status != "running"], what="its end")
        (done,) = r.range_tests()
    assert done.status == "done" and len(done.lrs) == 10
    n = test.step
    assert [u for u in used[n : n + 10]] == pytest.approx(done.lrs)  # the sweep's lr won
    wait_for(lambda: len(used) > n + 15, what="training after the test")
    # before and after: the step_fn's schedule (its counter went on) times the multiplier
    for k in [*range(out.step, n), *range(n + 10, n + 15)]:
        assert used[k] == pytest.approx(schedule(k) * m, rel=1e-12), k
    assert t.lr.script == {0, 1}


def test_watch_holds_an_unnamed_scheduler_so_edits_do_not_compound(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    probe = watch(opt, model, run_dir=tmp_path / "run")  # no scheduler= given
    assert probe.trainer is not None and probe.trainer.lr.scheduler is sched
    used: list[float] = []
    opt.register_step_pre_hook(lambda o, a, k: used.append(o.param_groups[0]["lr"]))
    x = torch.randn(8, 4)
    for s in range(12):
        if s == 4:
            send(probe.trainer.paths, "scale-lr", {"factor": 2.0}, timeout=0)
            probe.trainer.pump.take_now()
            # taken here, or by the command thread, which may have claimed it first and
            # not queued it yet: this step's boundary is the one that applies it
            assert probe.trainer.pump.arrived.wait(10)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        probe.step(loss)
        sched.step()
    probe.close()
    assert used == pytest.approx([0.1 * 0.9**s * (2 if s >= 5 else 1) for s in range(12)])
