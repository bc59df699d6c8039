"""Tensor lrs (capturable, fused, ``Adam(lr=torch.tensor(...))``) and in-place restores.

A tensor lr is changed in place by schedulers and edits: the record of each
step must be a copy taken without a sync, and restores must copy into the
tensors the optimizer holds (its fused kernels and CUDA graphs keep them)
instead of putting new CPU tensors in their place. The optimizer state and
Lookahead's slow weights are loaded in place too, so a restore never holds two
copies of them on the device.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from jobs import command, make_trainer, tiny_job

from optitui.store.reader import RunReader
from optitui.trainer.control import commands as control
from optitui.trainer.core import state
from optitui.trainer.loop.trainer import Trainer


def _tensor_lr_trainer(tmp_path: Path, **kw: object) -> Trainer:
    job = tiny_job("Adam", {"lr": torch.tensor(0.01)}, **kw)  # type: ignore[arg-type]
    job.scheduler = torch.optim.lr_scheduler.ExponentialLR(job.optimizer, gamma=0.5)
    return make_trainer(tmp_path, job, flush_every=9, flush_seconds=1e9)


def test_each_recorded_lr_is_the_one_its_step_used(tmp_path: Path) -> None:
    t = _tensor_lr_trainer(tmp_path, max_steps=9)
    lr = t.optimizer.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor)
    assert t.run() == "finished"
    assert t.optimizer.param_groups[0]["lr"] is lr  # the scheduler wrote into the tensor
    with RunReader(t.paths.root) as r:
        got = list(r.read_metrics().columns["lr/0"])
    assert got == pytest.approx([0.01 * 0.5**k for k in range(9)], rel=1e-6)


def test_a_snapshot_is_a_copy_read_once() -> None:
    from optitui.trainer.core import lr_record

    lr = torch.tensor(0.1, dtype=torch.float64)
    groups = [{"lr": lr}, {"lr": 0.5}]
    rows = []
    for _ in range(3):
        rows.append(lr_record.snapshot(groups))
        lr.mul_(0.5)
    assert lr_record.columns(rows) == [[0.1, 0.5], [0.05, 0.5], [0.025, 0.5]]
    assert lr_record.values(rows[1]) == [0.05, 0.5]


def _first_moment(t: Trainer) -> list[torch.Tensor]:
    return [t.optimizer.state[p]["exp_avg"] for g in t.optimizer.param_groups for p in g["params"]]


def test_restore_copies_into_the_tensors_the_optimizer_holds(tmp_path: Path) -> None:
    t = _tensor_lr_trainer(tmp_path)
    t._start()
    for _ in range(3):
        t._train_step()
        t.step += 1
    lr = t.optimizer.param_groups[0]["lr"]
    moments = _first_moment(t)
    snap = state.capture(t)
    saved = [m.clone() for m in moments]
    for _ in range(3):
        t._train_step()
        t.step += 1
    assert float(lr) == pytest.approx(0.01 * 0.5**6)
    state.restore(t, snap)
    # the same tensors, holding the saved values again
    assert t.optimizer.param_groups[0]["lr"] is lr
    assert float(lr) == pytest.approx(0.01 * 0.5**3)
    now = _first_moment(t)
    assert all(a is b for a, b in zip(now, moments, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(now, saved, strict=True))
    t.recorder.close()


def test_range_test_and_rollback_keep_the_lr_tensor(tmp_path: Path) -> None:
    t = _tensor_lr_trainer(tmp_path)
    t._start()
    lr = t.optimizer.param_groups[1]["lr"]
    control.apply(t, command("lr-find", num_iter=5))
    assert t.pending_test is not None
    t.run_range_test(t.pending_test)
    assert t.optimizer.param_groups[1]["lr"] is lr
    assert float(lr) == pytest.approx(0.01)
    t.recorder.close()


def test_lookahead_restore_reuses_its_slow_weights(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.05, "momentum": 0.9}))
    t._start()
    control.apply(t, command("lookahead", enabled=True, k=2, alpha=0.5))
    assert t.lookahead is not None
    slow = t.lookahead.slow
    for _ in range(3):
        t._train_step()
        t.step += 1
    snap = state.capture(t)
    saved = [s.clone() for s in slow]
    for _ in range(3):
        t._train_step()
        t.step += 1
    state.restore(t, snap)
    assert t.lookahead is not None and t.lookahead.count == 3
    assert all(a is b for a, b in zip(t.lookahead.slow, slow, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(t.lookahead.slow, saved, strict=True))
    t.recorder.close()


def test_a_restore_that_brings_lookahead_back_does_not_clone_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.05}))
    t._start()
    control.apply(t, command("lookahead", enabled=True, k=2, alpha=0.5))
    t._train_step()
    t.step += 1
    snap = state.capture(t)
    control.apply(t, command("lookahead", enabled=False))
    clones: list[int] = []
    real = torch.Tensor.clone

    def counting(self: torch.Tensor, *a: object, **k: object) -> torch.Tensor:
        clones.append(self.numel())
        return real(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.Tensor, "clone", counting)
    state.restore(t, snap)
    monkeypatch.undo()
    assert t.lookahead is not None
    # the slow weights are made once, from the snapshot; the live parameters are not cloned
    params = sum(p.numel() for p in t.model.parameters())
    assert sum(clones) < params
    t.recorder.close()
