"""Divergence guard, failures and out-of-memory: each shown, none swallowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import wait_for, write_script
from jobs import make_trainer, tiny_job
from torch import nn

from optitui.store import client
from optitui.store.commands import CommandError
from optitui.store.reader import RunReader
from optitui.trainer.core import checkpoint


class Faulty:
    """A step_fn that misbehaves on chosen calls (counting every micro-batch)."""

    def __init__(
        self,
        nan_at: set[int] = frozenset(),
        raise_at: int | None = None,  # type: ignore[assignment]
        oom_at: int | None = None,
        spike_from: int | None = None,
        oom: BaseException | None = None,
    ) -> None:
        self.oom = oom or torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.calls = 0
        self.nan_at, self.raise_at, self.oom_at, self.spike_from = (
            nan_at,
            raise_at,
            oom_at,
            spike_from,
        )

    def __call__(self, model: nn.Module, batch: Any) -> torch.Tensor:
        self.calls += 1
        x, y = batch
        loss = nn.functional.mse_loss(model(x), y)
        if self.calls == self.raise_at:
            raise ValueError("corrupt sample 1234")
        if self.calls == self.oom_at:
            raise self.oom
        if self.calls in self.nan_at:
            return loss * float("nan")
        if self.spike_from is not None and self.calls >= self.spike_from:
            return loss + 50 * loss.detach()  # the value jumps, the gradient does not
        return loss


def _job(fault: Faulty, **kw: Any) -> Any:
    job = tiny_job("SGD", {"lr": 0.01, "momentum": 0.9}, **kw)
    job.loss_fn, job.step_fn = None, fault
    return job


def _events(trainer: Any) -> list[Any]:
    with RunReader(trainer.paths.root) as r:
        return r.events()


def test_nan_pauses_within_k_steps(tmp_path: Path, run_in_thread: Any) -> None:
    t = make_trainer(tmp_path, _job(Faulty(nan_at={30})), flush_every=8, flush_seconds=1e9)
    run_in_thread(t)
    reader = RunReader(t.paths.root)
    wait_for(lambda: reader.status().state == "paused", what="paused by the guard")
    st = reader.status()
    assert 30 <= st.step <= 30 + 8  # found at the next flush, no per-step read
    assert st.message and "diverged at step 30" in st.message
    (err,) = [e for e in reader.events() if e.kind == "error"]
    assert "non-finite loss" in err.message and err.data and err.data["marker"] == "divergence"
    out = client.send(t.paths, "resume").outcome  # the user decides; resuming is allowed
    assert out is not None and out.applied


def test_rollback_goes_back_and_carries_on(tmp_path: Path) -> None:
    job = _job(
        Faulty(nan_at={41}),
        on_divergence="rollback",
        rollback_lr_factor=0.5,
        rollback_skip=2,
        max_steps=80,
    )
    t = make_trainer(tmp_path, job, flush_every=8, flush_seconds=1e9)
    t.guard.policy.snapshot_every = 16
    assert t.run() == "finished"
    assert t.guard.tripped == 1
    assert all(bool(p.isfinite().all()) for p in t.model.parameters())
    assert [g["lr"] for g in t.optimizer.param_groups] == [0.005, 0.005]
    ev = _events(t)
    rolled = [e for e in ev if e.kind == "error" and "rolled back" in e.message]
    assert len(rolled) == 1 and "skipped 2 batches" in rolled[0].message
    rewind = [e for e in ev if e.data and e.data.get("marker") == "restore"]
    # the newest good snapshot before the bad step 41 (snapshots every 16 steps, at flushes)
    assert rewind and rewind[0].data["to_step"] == 40 and rewind[0].data["from_step"] == 48
    for m in checkpoint.listing(t.paths.checkpoints):  # nothing non-finite was written
        snap = checkpoint.load(t.paths.checkpoints / m.file, m)
        assert checkpoint.non_finite(snap) is None


def test_rollback_without_a_good_state_pauses(tmp_path: Path, run_in_thread: Any) -> None:
    job = _job(Faulty(nan_at={3}), on_divergence="rollback")
    t = make_trainer(tmp_path, job, flush_every=4, flush_seconds=1e9)
    run_in_thread(t)
    reader = RunReader(t.paths.root)
    wait_for(lambda: reader.status().state == "paused", what="paused")
    assert any("no good state to roll back to" in e.message for e in reader.events())


def test_ignore_records_and_goes_on(tmp_path: Path) -> None:
    t = make_trainer(
        tmp_path, _job(Faulty(nan_at={5}), on_divergence="ignore", max_steps=20), flush_every=4
    )
    assert t.run() == "finished" and t.step == 20
    assert any("ignored" in e.message for e in _events(t))


def test_spike_is_a_warning_with_a_marker(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, _job(Faulty(spike_from=120), max_steps=160), flush_every=8)
    t.run()
    spikes = [e for e in _events(t) if e.data and e.data.get("marker") == "spike"]
    assert len(spikes) == 1 and spikes[0].kind == "warning" and 120 <= spikes[0].step <= 160


def test_policy_can_change_live(tmp_path: Path, run_in_thread: Any) -> None:
    t = make_trainer(tmp_path, _job(Faulty()), flush_every=8)
    run_in_thread(t)
    reader = RunReader(t.paths.root)
    wait_for(lambda: reader.status().step > 5, what="training")
    out = client.send(t.paths, "divergence", {"action": "rollback", "lr_factor": 0.25})
    assert out.outcome is not None and out.outcome.applied
    assert t.guard.policy.action == "rollback" and t.guard.policy.lr_factor == 0.25
    with pytest.raises(CommandError, match="action: 'explode'"):  # refused before sending
        client.send(t.paths, "divergence", {"skip": 3, "action": "explode"})
    assert t.guard.policy.skip == 10


def test_exception_in_the_step_fails_the_run_with_its_traceback(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, _job(Faulty(raise_at=25)))
    with pytest.raises(ValueError, match="corrupt sample"):
        t.run()
    with RunReader(t.paths.root) as r:
        st = r.status()
        assert st.state == "failed" and "corrupt sample 1234" in (st.message or "")
        (err,) = [e for e in r.events() if e.kind == "error"]
        tb = err.data["traceback"] if err.data else ""
        assert "Traceback" in tb and "__call__" in tb and "test_guard.py" in tb
    (m,) = checkpoint.listing(t.paths.checkpoints)
    assert m.reason == "failure" and m.step == 24


class BadLoader:
    def __iter__(self) -> Any:
        yield from tiny_job().train_data
        raise OSError("disk gone")


class BadVal:
    def __iter__(self) -> Any:
        raise RuntimeError("val shard missing")


@pytest.mark.parametrize(("where", "needle"), [("data", "disk gone"), ("val", "val shard")])
def test_exceptions_in_data_and_validation(tmp_path: Path, where: str, needle: str) -> None:
    job = tiny_job()
    if where == "data":
        job.train_data = BadLoader()
    else:
        job.val_data, job.val_every = BadVal(), 5
    t = make_trainer(tmp_path, job)
    with pytest.raises(Exception, match=needle):
        t.run()
    with RunReader(t.paths.root) as r:
        assert r.status().state == "failed"


@pytest.mark.parametrize(
    "oom",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        # what older CUDA paths, MPS and XPU raise: a plain RuntimeError
        RuntimeError("CUDA error: out of memory"),
        RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB, max allowed: 18 GB)"),
        RuntimeError("XPU out of memory. Tried to allocate 1.00 GiB"),
    ],
    ids=["OutOfMemoryError", "cuda-runtime", "mps", "xpu"],
)
def test_out_of_memory_pauses(tmp_path: Path, run_in_thread: Any, oom: BaseException) -> None:
    t = make_trainer(tmp_path, _job(Faulty(oom_at=10, oom=oom)), flush_every=4)
    run_in_thread(t)
    reader = RunReader(t.paths.root)
    wait_for(lambda: reader.status().state == "paused", what="paused on OOM")
    st = reader.status()
    assert st.step == 9 and "out of memory at step 10" in (st.message or "")
    assert str(oom).split(".")[0] in (st.message or "")
    assert client.send(t.paths, "resume").outcome is not None
    wait_for(lambda: reader.status().step > 20, what="training again")


def test_other_runtime_errors_still_fail_the_run(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, _job(Faulty(oom_at=3, oom=RuntimeError("shape mismatch"))))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        t.run()
    with RunReader(t.paths.root) as r:
        assert r.status().state == "failed"


def test_headless_failure_exits_without_hanging(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        """
import torch, optitui
from torch import nn
def step_fn(model, batch):
    raise KeyError("label_ids")
def setup(device):
    m = nn.Linear(4, 1)
    return optitui.Job(model=m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1),
                       train_data=[torch.zeros(2, 4)] * 4, step_fn=step_fn)
""",
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "optitui",
            "run",
            str(script),
            "--headless",
            "--root",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "KeyError: 'label_ids'" in proc.stderr and "the run failed at step 0" in proc.stderr
    (run,) = (tmp_path / "runs").iterdir()
    with RunReader(run) as r:
        assert r.status().state == "failed"


def test_spike_watch_takes_calm_batches_whole_and_finds_the_same_spikes() -> None:
    """A batch where no median can pass the bar is taken without the per-step loop: the
    spikes found, and the state after, are those of the per-step reference."""
    import math
    import random
    import statistics

    from optitui.trainer.control import spikes

    def reference(factor: float, batches: list[list[tuple[float, float]]]) -> list[int]:
        hist: list[float] = []
        recent: list[float] = []
        on, found = False, []
        for points in batches:
            level = None
            if len(hist[-spikes.WINDOW :]) >= spikes.WARMUP:
                h = hist[-spikes.WINDOW :]
                mid = statistics.median(h)
                level = (mid, spikes.MAD_TO_SIGMA * statistics.median(abs(x - mid) for x in h))
            for step, x in points:
                if not math.isfinite(x):
                    continue
                recent = [*recent, x][-spikes.RECENT :]
                hist.append(x)
                if level is None or len(recent) < spikes.RECENT:
                    continue
                now = statistics.median(recent)
                lv, noise = level
                above = now > lv + spikes.NOISE * noise and (lv <= 0 or now > factor * lv)
                if not on and above:
                    on = True
                    found.append(int(step))
                elif on and now < lv + spikes.BACK * noise:
                    on = False
        return found

    rng = random.Random(0)
    step = 0
    batches = []
    for b in range(120):
        points = []
        for _ in range(rng.choice([1, 7, 64])):
            step += 1
            x = 1.0 + rng.gauss(0, 0.01)
            if 40 <= b < 43 or b == 90:
                x *= 5.0  # an episode, and a one-batch one
            if rng.random() < 0.01:
                x = math.nan if rng.random() < 0.5 else 30.0
            points.append((float(step), x))
        batches.append(points)
    watch = spikes.SpikeWatch(3.0)
    got = [s.step for points in batches for s in watch.feed(points)]
    assert got == reference(3.0, batches)
    assert len(got) >= 2
