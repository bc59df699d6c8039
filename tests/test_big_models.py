"""Snapshots proportional to the model: sized up front, and past a limit not in memory.

Sizes are checked on the ``meta`` device (a 7B-parameter model costs nothing
there); what the guard and the range test do past the limit is checked with a
tiny model and a lowered ``Job.snapshot_limit_gb``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from jobs import command, make_trainer, tiny_job
from torch import nn

from optitui.store.reader import RunReader
from optitui.trainer.control import commands as control
from optitui.trainer.control import rangetest


def _seven_billion(dtype: torch.dtype = torch.float32) -> nn.Module:
    return nn.Embedding(7_000_000, 1000, device="meta", dtype=dtype)  # 7.0e9 parameters


@pytest.mark.parametrize(
    ("optimizer", "kwargs", "dtype", "gigabytes"),
    [
        ("AdamW", {}, torch.float32, 84.0),  # 4 bytes of weights + 8 of moments a parameter
        ("AdamW", {}, torch.bfloat16, 42.0),  # moments in the parameters' dtype
        ("Adam", {"amsgrad": True}, torch.float32, 112.0),
        ("SGD", {"lr": 0.1, "momentum": 0.9}, torch.float32, 56.0),
        ("SGD", {"lr": 0.1}, torch.float32, 28.0),
        ("Adagrad", {}, torch.float32, 56.0),
    ],
)
def test_the_size_of_a_7b_model_is_known_before_any_step(
    optimizer: str, kwargs: dict[str, Any], dtype: torch.dtype, gigabytes: float
) -> None:
    from optitui.trainer.core import footprint

    model = _seven_billion(dtype)
    opt = getattr(torch.optim, optimizer)(model.parameters(), **kwargs)
    size = footprint.measure(model, opt)
    assert size.params == 7_000_000_000
    assert size.total == pytest.approx(gigabytes * 1e9, rel=1e-6)
    assert f"{gigabytes:.2f} GB" in size.describe() and "7.0B parameters" in size.describe()


def test_existing_optimizer_state_is_counted_as_it_is() -> None:
    from optitui.trainer.core import footprint

    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 8)).sum().backward()
    opt.step()
    size = footprint.measure(model, opt)
    live = sum(
        v.numel() * v.element_size()
        for st in opt.state.values()
        for v in st.values()
        if isinstance(v, torch.Tensor)
    )
    assert size.optimizer_bytes == live
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert size.model_bytes == weights  # BatchNorm's running statistics included


def _nan_at(step: int) -> Any:
    calls = [0]

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        calls[0] += 1
        x, y = batch
        loss = nn.functional.mse_loss(model(x), y)
        return loss * float("nan") if calls[0] == step else loss

    return step_fn


def _events(run_dir: Path) -> list[str]:
    with RunReader(run_dir) as r:
        return [e.message for e in r.events()]


def test_past_the_limit_rollback_goes_to_a_checkpoint_and_says_so(tmp_path: Path) -> None:
    job = tiny_job(on_divergence="rollback", checkpoint_every=8, max_steps=40)
    job.loss_fn, job.step_fn = None, _nan_at(30)
    job.snapshot_limit_gb = 1e-7  # 100 bytes: the tiny model stands for a 7B one
    t = make_trainer(tmp_path, job, flush_every=4, flush_seconds=1e9)
    assert t.run() == "finished"
    assert t.guard.good is None  # never copied to host memory
    said = _events(t.paths.root)
    assert any("over snapshot_limit_gb=1e-07: no in-memory snapshot" in m for m in said)
    (rolled,) = [m for m in said if "rolled back to" in m]
    assert "rolled back to step00000024-periodic" in rolled


def test_under_the_limit_the_cost_is_said_up_front(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, tiny_job(on_divergence="rollback", max_steps=2))
    assert t.run() == "finished"
    (said,) = [m for m in _events(t.paths.root) if m.startswith("divergence rollback")]
    assert said.endswith(
        "an in-memory snapshot every 200 steps, 161 parameters, 644 bytes with the SGD state"
    )


def test_past_the_limit_the_range_test_snapshot_goes_to_disk_without_a_host_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = tiny_job("AdamW", {"lr": 0.01})
    job.snapshot_limit_gb = 1e-7
    t = make_trainer(tmp_path, job)
    t._start()
    for _ in range(3):
        t._train_step()
        t.step += 1
    before = [p.detach().clone() for p in t.model.parameters()]
    written: list[dict[str, Any]] = []
    real_save = torch.save

    def save(obj: Any, f: Any, *a: Any, **k: Any) -> None:
        written.append(obj)
        real_save(obj, f, *a, **k)

    monkeypatch.setattr(rangetest.torch, "save", save)
    control.apply(t, command("lr-find", num_iter=10))
    assert t.pending_test is not None
    test = t.run_range_test(t.pending_test)
    assert test.status == "done" and test.to_disk
    (snap,) = written
    live = dict(t.model.named_parameters())
    # the file was written from the live tensors, not from a copy of the whole state
    assert all(snap["model"][k].data_ptr() == p.data_ptr() for k, p in live.items())
    for a, b in zip(t.model.parameters(), before, strict=True):
        assert torch.equal(a, b)  # put back exactly
    assert not list(t.paths.root.glob(".lrfind-*"))
    assert any(
        "over snapshot_limit_gb=1e-07, so written to .lrfind-" in m for m in _events(t.paths.root)
    )
    t.recorder.close()


def test_the_limit_is_checked() -> None:
    from optitui.trainer.core.job import JobError

    job = tiny_job()
    job.snapshot_limit_gb = -1
    with pytest.raises(JobError, match="snapshot_limit_gb must be a number >= 0"):
        job.validate()
