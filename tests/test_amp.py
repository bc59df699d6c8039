"""Mixed precision on the CPU: bf16 losses, GradScaler("cpu") and fused SGD.

The CPU has the same autocast and GradScaler code paths as CUDA (fused SGD and
Adam take the scaler's ``grad_scale`` and ``found_inf`` on the CPU too), so
what the trainer and the probes record under AMP is checked here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from jobs import make_trainer, tiny_job

from optitui.store.reader import RunReader


def test_bf16_micro_batch_losses_are_summed_in_float32(tmp_path: Path) -> None:
    job = tiny_job(grad_accum=8, max_steps=1)

    def step_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        x, _ = batch
        return (model(x).sum() * 0 + 2.345).to(torch.bfloat16)

    job.loss_fn, job.step_fn = None, step_fn
    t = make_trainer(tmp_path, job)
    assert t.run() == "finished"
    with RunReader(t.paths.root) as r:
        (loss,) = r.read_metrics().columns["loss"]
    # bf16(2.345) is 2.34375; eight of them summed in bf16 drift to 2.359
    assert loss == pytest.approx(float(torch.tensor(2.345, dtype=torch.bfloat16)), abs=1e-6)


# -- a probe under GradScaler: fused SGD takes the scale into its own step ----------------------
X = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
Y = torch.randn(64, 1, generator=torch.Generator().manual_seed(2))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(8, 1)


def _amp_loop(
    steps: int,
    *,
    fused: bool,
    init_scale: float,
    probe_dir: Path | None,
    clip: float | None,
    gain: float = 1.0,
) -> tuple[torch.nn.Module, Any]:
    """A plain AMP loop; with ``probe_dir`` watched (clipping done by the probe), else
    clipping by hand after ``scaler.unscale_`` (the documented way)."""
    import optitui

    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, fused=fused)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    probe = None
    if probe_dir is not None:
        probe = optitui.watch(opt, model=model, run_dir=probe_dir, on_divergence="ignore")
        assert probe.trainer is not None
        probe.trainer.clip = clip
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(X), Y) * gain
        opt.zero_grad()
        scaler.scale(loss).backward()
        if probe is None and clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        scaler.step(opt)
        scaler.update()
        if probe is not None:
            probe.step(loss)
    if probe is not None:
        probe.close()
    return model, probe


def _columns(run_dir: Path) -> dict[str, list[float]]:
    with RunReader(run_dir) as r:
        return {k: list(v) for k, v in r.read_metrics().columns.items()}


def _errors(run_dir: Path) -> list[str]:
    with RunReader(run_dir) as r:
        return [e.message for e in r.events() if e.kind == "error"]


def test_probe_clips_the_unscaled_gradients_of_a_fused_optimizer(tmp_path: Path) -> None:
    watched, _ = _amp_loop(6, fused=True, init_scale=2.0**16, probe_dir=tmp_path / "r", clip=0.5)
    by_hand, _ = _amp_loop(6, fused=True, init_scale=2.0**16, probe_dir=None, clip=0.5)
    for a, b in zip(watched.parameters(), by_hand.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # the same updates: clipped by the true norm
    cols = _columns(tmp_path / "r")
    model = _model()
    torch.nn.functional.mse_loss(model(X), Y).backward()
    true_norm = float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]))
    assert cols["grad_norm"][0] == pytest.approx(true_norm, rel=1e-4)  # not 65536 times it


@pytest.mark.parametrize("fused", [True, False])
def test_scaler_skipped_steps_are_recorded_as_skipped_not_divergence(
    tmp_path: Path, fused: bool
) -> None:
    """fp16 autocast with GradScaler's default scale: the first backward passes overflow
    float16, the scaler skips those steps and halves the scale, as at the start of every
    fp16 run. Neither a divergence nor a grad norm: recorded as skipped."""
    import optitui

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, fused=fused)
    scaler = torch.amp.GradScaler("cpu")
    probe = optitui.watch(
        opt, model=model, run_dir=tmp_path / "r", flush_every=8, on_divergence="ignore"
    )
    assert probe.trainer is not None
    probe.trainer.clip = 1.0
    for _ in range(24):
        with torch.autocast("cpu", dtype=torch.float16):
            loss = torch.nn.functional.mse_loss(model(X), Y * 30)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        probe.step(loss)
    probe.close()
    cols = _columns(tmp_path / "r")
    skipped = cols["skipped"]
    assert len(skipped) == 24 and skipped[0] == 1.0 and 0 < sum(skipped) < 24
    assert all(math.isfinite(x) for x in cols["loss"])  # the true losses, every step
    norms = cols["grad_norm"]
    assert all(math.isnan(g) == bool(k) for g, k in zip(norms, skipped, strict=True))
    assert all(g < 1e4 for g, k in zip(norms, skipped, strict=True) if not k)  # unscaled
    assert _errors(tmp_path / "r") == []


# -- Job(precision=...): autocast, and a GradScaler for fp16 ------------------------------------
def _fp16_job(**kw: Any) -> Any:
    job = tiny_job("SGD", {"lr": 0.01, "momentum": 0.9}, precision="fp16", **kw)
    seen: list[tuple[bool, torch.dtype]] = []

    def step_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return torch.nn.functional.mse_loss(model(x), y * 30)

    job.loss_fn, job.step_fn = None, step_fn
    return job, seen


def test_fp16_trains_with_loss_scaling_and_records_true_losses(tmp_path: Path) -> None:
    job, seen = _fp16_job(max_steps=24, clip_grad_norm=5.0)
    t = make_trainer(tmp_path, job, flush_every=8, flush_seconds=1e9)
    assert t.run() == "finished"
    assert seen and all(s == (True, torch.float16) for s in seen)  # the forward under autocast
    scaler = t.amp.scaler
    assert scaler is not None and scaler.get_scale() < 2.0**16  # it backed off
    cols = _columns(t.paths.root)
    skipped = cols["skipped"]
    assert skipped[0] == 1.0 and 0 < sum(skipped) < 24
    assert all(math.isfinite(x) and x < 1e5 for x in cols["loss"])  # not times 65536
    assert all(math.isnan(g) == bool(k) for g, k in zip(cols["grad_norm"], skipped, strict=True))
    assert _errors(t.paths.root) == []


def test_bf16_autocasts_without_a_scaler(tmp_path: Path) -> None:
    job, seen = _fp16_job(max_steps=3)
    job.precision = "bf16"
    t = make_trainer(tmp_path, job)
    assert t.run() == "finished" and t.amp.scaler is None
    assert seen == [(True, torch.bfloat16)] * 3
    assert "skipped" not in _columns(t.paths.root)


def test_precision_is_checked(tmp_path: Path) -> None:
    from optitui.trainer.core.job import JobError

    job = tiny_job(precision="fp8")
    with pytest.raises(JobError, match="precision must be one of '32', 'bf16', 'fp16'"):
        job.validate()


def _fp16_trained(tmp_path: Path, steps: int) -> tuple[Any, torch.amp.GradScaler]:
    job, _ = _fp16_job()
    t = make_trainer(tmp_path, job)
    t._start()
    for _ in range(steps):
        t._train_step()
        t.step += 1
    assert t.amp.scaler is not None
    return t, t.amp.scaler


def test_the_scaler_is_in_checkpoints_and_restored(tmp_path: Path) -> None:
    from optitui.trainer.core import checkpoint, state

    t, scaler = _fp16_trained(tmp_path, 4)
    saved_scale = scaler.get_scale()
    snap = state.capture(t)
    assert snap["scaler"]["scale"] == saved_scale
    checkpoint.check_compatible(t, snap)  # a checkpoint's checks know the scaler's state
    with pytest.raises(checkpoint.CheckpointError, match=r"scaler\.scale"):
        checkpoint.check_compatible(t, {**snap, "scaler": {**snap["scaler"], "scale": -1.0}})
    scaler.update(new_scale=1.0)
    state.restore(t, snap)
    assert scaler.get_scale() == saved_scale
    t.recorder.close()


def test_the_range_test_steps_through_the_scaler_and_restores_it(tmp_path: Path) -> None:
    from jobs import command

    from optitui.trainer.control import commands as control

    t, scaler = _fp16_trained(tmp_path, 8)
    before = scaler.get_scale()
    control.apply(t, command("lr-find", start_lr=1e-4, end_lr=100.0, num_iter=30))
    assert t.pending_test is not None
    test = t.run_range_test(t.pending_test)
    assert test.status == "done" and test.losses
    assert all(x < 1e5 for x in test.losses[:5])  # unscaled losses
    assert scaler.get_scale() == before
    t.recorder.close()


# -- zero-code mode: the unscaled loss, skipped steps, LBFGS -----------------------------------
def test_zero_code_records_the_unscaled_loss_and_skipped_steps(zero: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)  # not fused: the scaler skips step()
    scaler = torch.amp.GradScaler("cpu")
    true: list[float] = []
    for i in range(20):
        if i == 12:
            scaler.update(new_scale=2.0**20)  # the next backward overflows float16 again
        with torch.autocast("cpu", dtype=torch.float16):
            loss = torch.nn.functional.mse_loss(model(X), Y * 30)
        true.append(loss.item())
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    zero.probe.close()
    cols = _columns(tmp_path / "zc")
    # the probe exists from the first step the scaler let through; from there on every
    # iteration is a recorded step, the skipped ones marked, each with its own true loss
    n = len(cols["loss"])
    assert 0 < n < 20
    assert cols["loss"] == pytest.approx(true[-n:], rel=1e-6)
    # (a flush before the scaler first skipped a step has no skipped column: empty, not 1)
    skipped = [0.0 if math.isnan(v) else v for v in cols["skipped"]]
    assert skipped[12 - (20 - n)] == 1.0 and 1 <= sum(skipped) < n


def test_zero_code_records_what_lbfgs_step_returns(zero: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=20)
    returned: list[float] = []
    calls = [0]

    def closure() -> torch.Tensor:
        calls[0] += 1
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), Y)
        loss.backward()
        return loss

    for _ in range(4):
        returned.append(float(opt.step(closure).detach()))
    zero.probe.close()
    assert calls[0] > 8  # several closure calls per step
    assert _columns(tmp_path / "zc")["loss"] == pytest.approx(returned, rel=1e-6)


def test_a_scaler_that_skips_every_step_is_a_divergence(tmp_path: Path) -> None:
    from optitui.trainer.control.guard import MAX_SKIPPED

    t = make_trainer(tmp_path, tiny_job(on_divergence="ignore"))
    t._start()
    steps = [float(i) for i in range(1, 61)]
    norms = [math.nan] * 60  # a step not taken has no grad norm
    assert not t.guard.observe(steps, [1.0] * 60, norms, [1.0] * 60)
    assert not t.guard.observe(steps, [1.0] * 60, [1.0, *norms[1:]], [0.0, *[1.0] * 59])
    assert t.guard.tripped == 0  # skipped steps are the scaler's business, up to a point
    t.guard.observe(steps, [1.0] * 60, norms, [1.0] * 60)
    assert t.guard.tripped == 1
    t.recorder.close()
    assert any(f"skipped {MAX_SKIPPED} steps in a row" in e for e in _errors(t.paths.root))
