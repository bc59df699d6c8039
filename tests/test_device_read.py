"""Flush values read one flush later (CUDA's path), on CPU tensors with a stand-in event.

On CUDA each check flush copies its values to pinned host memory without blocking and
records an event; the next flush reads them (waiting only if the event has not passed)
and the divergence guard acts on them then. Here the copy goes to ordinary CPU memory
and the event is a stand-in whose state the test sets."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from jobs import make_trainer, tiny_job
from torch import nn

from optitui.store.reader import RunReader
from optitui.store.records import MetricBatch
from optitui.trainer.loop.device_read import DeferredReads, for_device
from optitui.trainer.loop.trainer import Trainer


class Event:
    """A CUDA event's stand-in: ``passed`` says whether the device is past it."""

    made: ClassVar[list[Event]] = []

    def __init__(self) -> None:
        self.passed = True
        self.recorded = False
        self.waited = 0
        Event.made.append(self)

    def record(self) -> None:
        self.recorded = True

    def query(self) -> bool:
        return self.passed

    def synchronize(self) -> None:
        self.waited += 1
        self.passed = True


def deferred() -> DeferredReads:
    Event.made = []
    return DeferredReads(lambda v: torch.empty(v.shape, dtype=v.dtype), Event)


def step_fn(model: nn.Module, batch: Any) -> dict[str, Any]:
    x, y = batch
    out = model(x)
    return {"loss": nn.functional.mse_loss(out, y), "mean": out.mean(), "half": 0.5}


def metric_trainer(tmp_path: Path, name: str, **kw: Any) -> Trainer:
    job = tiny_job("SGD", {"lr": 0.01, "momentum": 0.9}, clip_grad_norm=1.0, **kw)
    job.loss_fn, job.step_fn = None, step_fn
    return make_trainer(tmp_path, job, name=name, flush_every=8, flush_seconds=1e9)


def train(t: Trainer, steps: int) -> None:
    """``steps`` steps as the loop takes them, flushes (with the guard) when due."""
    if t.state == "starting":
        t._start()
    for _ in range(steps):
        t._train_step()
        t._after_step()


def test_reads_are_at_once_except_on_cuda() -> None:
    assert for_device(torch.device("cpu")) is None
    assert for_device(torch.device("meta")) is None


def test_values_read_a_flush_later_are_recorded_exactly_as_read_at_once(tmp_path: Path) -> None:
    now = metric_trainer(tmp_path, "now", max_steps=44)
    assert now.run() == "finished"
    later = metric_trainer(tmp_path, "later", max_steps=44)
    later.reads = deferred()
    assert later.run() == "finished"
    assert len(Event.made) == 44 // 8 and all(e.recorded and not e.waited for e in Event.made)
    with RunReader(now.paths.root) as a, RunReader(later.paths.root) as b:
        x, y = a.read_metrics(), b.read_metrics()
        assert x.length == y.length == 44
        names = ("loss", "grad_norm", "lr/0", "lr/1", "user:mean", "user:half", "step")
        for name in names:
            assert list(x.columns[name]) == list(y.columns[name]), name


def test_a_flush_records_the_values_of_the_one_before(tmp_path: Path) -> None:
    t = metric_trainer(tmp_path, "run")
    t.reads = deferred()
    batches: list[MetricBatch] = []
    put = t.recorder.put
    t.recorder.put = lambda r: (batches.append(r) if isinstance(r, MetricBatch) else None) or put(r)  # type: ignore[method-assign]
    train(t, 8)  # the first flush: its copy is on its way, nothing is recorded
    assert batches == [] and len(Event.made) == 1
    train(t, 8)  # the second: the first flush's values are read and recorded
    assert [list(b.columns["step"]) for b in batches] == [list(range(1, 9))]
    Event.made[1].passed = False  # the device is not past the second copy yet
    t.flush()  # a flush that needs everything now (a pause, a save, the end) waits for it
    assert Event.made[1].waited == 1
    assert [list(b.columns["step"])[-1] for b in batches] == [8, 16]
    assert all(not math.isnan(v) for b in batches for v in b.columns["loss"])


def test_an_event_not_passed_at_the_next_flush_is_waited_for_then(tmp_path: Path) -> None:
    t = metric_trainer(tmp_path, "run")
    t.reads = deferred()
    train(t, 8)
    Event.made[0].passed = False
    train(t, 8)
    assert Event.made[0].waited == 1 and Event.made[1].waited == 0


def test_the_guard_acts_on_a_non_finite_loss_one_flush_later(tmp_path: Path) -> None:
    calls = {"n": 0}

    def nan_at_11(model: nn.Module, batch: Any) -> torch.Tensor:
        calls["n"] += 1
        x, y = batch
        loss = nn.functional.mse_loss(model(x), y)
        return loss * float("nan") if calls["n"] == 11 else loss

    job = tiny_job("SGD", {"lr": 0.01})
    job.loss_fn, job.step_fn = None, nan_at_11
    t = make_trainer(tmp_path, job, flush_every=8, flush_seconds=1e9)
    t.reads = deferred()
    train(t, 16)  # step 11 is in the second flush, whose values are still on their way
    assert not t.paused
    train(t, 8)  # read at the third flush: the guard pauses the run
    assert t.paused and t.pause_message == "diverged at step 11: paused"
