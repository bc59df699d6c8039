"""Ramp, reset, freeze, swap, lookahead and clipping: each checked by its numbers."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from jobs import command, drive, make_trainer, tiny_job
from torch.optim import lr_scheduler as S

from optitui.store.commands import CommandError
from optitui.store.reader import RunReader
from optitui.trainer.control import commands as control

X = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
Y = torch.randn(32, 1, generator=torch.Generator().manual_seed(2))


def fixed_step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.mse_loss(model(X), Y).backward()
    opt.step()


def test_lr_ramp_without_scheduler(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.1}))
    lrs = drive(trainer, 20, {5: [command("set", values={"lr": 0.2}, group="head", ramp=10)]})
    assert lrs[4][1] == 0.1
    for k in range(1, 11):  # step 5 + k uses the k-th tenth of the way
        assert math.isclose(lrs[4 + k][1], 0.1 + 0.01 * k, rel_tol=1e-12), (k, lrs[4 + k])
    assert lrs[15][1] == 0.2 and lrs[19][1] == 0.2  # lands exactly and stays
    assert all(lr[0] == 0.1 for lr in lrs)


def test_lr_ramp_under_a_scheduler_ramps_the_multiplier(tmp_path: Path) -> None:
    def trainer(name: str):  # type: ignore[no-untyped-def]
        job = tiny_job("SGD", {"lr": 0.1})
        job.scheduler = S.ExponentialLR(job.optimizer, gamma=0.95)
        return make_trainer(tmp_path, job, name=name)

    plain = drive(trainer("plain"), 20)
    ramped = drive(trainer("ramped"), 20, {5: [command("scale-lr", factor=3.0, ramp=4)]})
    for k in range(1, 15):
        m = 1 + 2 * min(k, 4) / 4
        assert math.isclose(ramped[4 + k][0], plain[4 + k][0] * m, rel_tol=1e-12), k


def test_field_ramp_and_bool_refusal(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tiny_job("SGD", {"momentum": 0.9}))
    seen = []
    drive(trainer, 5)
    control.apply(trainer, command("set", values={"momentum": 0.5}, group=0, ramp=4))
    for _ in range(5):
        seen.append(trainer.optimizer.param_groups[0]["momentum"])
        drive(trainer, 1)
    assert seen == pytest.approx([0.8, 0.7, 0.6, 0.5, 0.5], abs=1e-12)
    assert trainer.optimizer.param_groups[1]["momentum"] == 0.9
    with pytest.raises(control.Rejection, match="cannot be ramped"):
        control.apply(trainer, command("set", values={"nesterov": True}, ramp=3))


def test_reset_state(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tiny_job("Adam", {"lr": 0.01}))
    for _ in range(5):
        fixed_step(trainer.model, trainer.optimizer)
    ref_model, ref_opt = copy.deepcopy((trainer.model, trainer.optimizer))
    control.apply(trainer, command("reset-state", group="body"))
    body = trainer.optimizer.param_groups[0]["params"]
    assert all(p not in trainer.optimizer.state for p in body)
    # the reference: group 0's state dropped by hand, group 1's kept
    for p in ref_opt.param_groups[0]["params"]:
        del ref_opt.state[p]
    fixed_step(trainer.model, trainer.optimizer)
    fixed_step(ref_model, ref_opt)
    for p, q in zip(trainer.model.parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert int(trainer.optimizer.state[body[0]]["step"]) == 1  # a fresh start
    head = trainer.optimizer.param_groups[1]["params"][0]
    assert int(trainer.optimizer.state[head]["step"]) == 6


def test_freeze_and_unfreeze(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tiny_job("SGD", {"weight_decay": 0.1, "momentum": 0.9}))
    drive(trainer, 3)
    control.apply(trainer, command("freeze", group="body"))
    body = [p.detach().clone() for p in trainer.optimizer.param_groups[0]["params"]]
    head = [p.detach().clone() for p in trainer.optimizer.param_groups[1]["params"]]
    drive(trainer, 5)
    # no update at all for the frozen group, not even weight decay or momentum
    for p, q in zip(trainer.optimizer.param_groups[0]["params"], body, strict=True):
        assert torch.equal(p, q)
    assert any(
        not torch.equal(p, q)
        for p, q in zip(trainer.optimizer.param_groups[1]["params"], head, strict=True)
    )
    snap = trainer.group_snapshot()
    assert snap[0]["frozen"] and not snap[1]["frozen"]
    with pytest.raises(control.Rejection, match="at least one group must keep training"):
        control.apply(trainer, command("freeze", group="head"))
    control.apply(trainer, command("unfreeze", group="body"))
    drive(trainer, 1)
    assert any(
        not torch.equal(p, q)
        for p, q in zip(trainer.optimizer.param_groups[0]["params"], body, strict=True)
    )


def test_swap_optimizer_keeps_groups_and_schedule(tmp_path: Path) -> None:
    job = tiny_job("Adam", {"lr": 0.01})
    job.optimizer.param_groups[1]["lr"] = 0.004
    job.scheduler = S.ExponentialLR(job.optimizer, gamma=0.9)
    trainer = make_trainer(tmp_path, job)
    drive(trainer, 3)
    lrs_before = [g["lr"] for g in trainer.optimizer.param_groups]
    control.apply(trainer, command("swap-optimizer", name="SGD", values={"momentum": 0.8}))
    opt = trainer.optimizer
    assert type(opt) is torch.optim.SGD and job.optimizer is opt
    assert [g["name"] for g in opt.param_groups] == ["body", "head"]
    assert [g["lr"] for g in opt.param_groups] == lrs_before
    assert all(g["momentum"] == 0.8 for g in opt.param_groups)
    assert len(opt.state) == 0  # state starts fresh
    lrs = drive(trainer, 3)
    assert lrs[0] == lrs_before
    assert lrs[2][0] == pytest.approx(lrs_before[0] * 0.9**2)  # the scheduler drives it
    assert all("momentum_buffer" in opt.state[p] for p in opt.param_groups[0]["params"])
    with pytest.raises(CommandError, match="not one of"):  # refused at the boundary
        command("swap-optimizer", name="Bogus", values={"momentum": 0.5})
    with pytest.raises(control.Rejection, match="has no field"):
        control.apply(trainer, command("swap-optimizer", name="Adagrad", values={"momentum": 0.5}))
    with pytest.raises(control.Rejection, match="momentum"):
        control.apply(trainer, command("swap-optimizer", name="SGD", values={"momentum": -1}))
    assert trainer.optimizer is opt


def test_swap_checks_values_against_the_class_fields_not_themselves(tmp_path: Path) -> None:
    """torch checks its constructor's arguments, not a group's: betas=0.9 in a group
    builds an Adam that fails at its first step. The swap refuses it and keeps training."""
    trainer = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.05}))
    drive(trainer, 2)
    before = trainer.optimizer
    for values, field in (
        ({"betas": 0.9}, "betas"),
        ({"betas": (0.9,)}, "betas"),
        ({"amsgrad": (1.0, 2.0)}, "amsgrad"),
        ({"lr": (0.1, 0.2)}, "lr"),
    ):
        with pytest.raises(control.Rejection, match=field):
            control.apply(trainer, command("swap-optimizer", name="Adam", values=values))
        assert trainer.optimizer is before
    drive(trainer, 2)  # still trains
    control.apply(trainer, command("swap-optimizer", name="Adam", values={"betas": (0.8, 0.99)}))
    assert all(g["betas"] == (0.8, 0.99) for g in trainer.optimizer.param_groups)
    drive(trainer, 2)


def test_lookahead(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.05}))
    drive(trainer, 2)
    ref_model, ref_opt = copy.deepcopy((trainer.model, trainer.optimizer))
    slow = [p.detach().clone() for p in trainer.model.parameters()]
    control.apply(trainer, command("lookahead", enabled=True, k=3, alpha=0.5))
    for i in range(3):
        fixed_step(trainer.model, trainer.optimizer)
        trainer.lookahead.after_step()  # type: ignore[union-attr]
        fixed_step(ref_model, ref_opt)
        if i < 2:  # between syncs the fast weights run free
            for p, q in zip(trainer.model.parameters(), ref_model.parameters(), strict=True):
                assert torch.equal(p, q)
    for p, s, fast in zip(trainer.model.parameters(), slow, ref_model.parameters(), strict=True):
        assert torch.allclose(p, s + 0.5 * (fast - s), rtol=0, atol=1e-7)
        assert not torch.equal(p, fast)
    control.apply(trainer, command("lookahead", enabled=False))
    assert trainer.lookahead is None and trainer.controls()["lookahead"] is None


def test_clip_on_and_off(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.1}), flush_every=10)
    drive(trainer, 10)
    trainer.flush()
    control.apply(trainer, command("clip", max_norm=0.01))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    drive(trainer, 1)
    moved = torch.sqrt(
        sum(((p - q) ** 2).sum() for p, q in zip(trainer.model.parameters(), before, strict=True))
    )
    assert float(moved) == pytest.approx(0.1 * 0.01, rel=1e-4)  # lr * max_norm: clipped
    drive(trainer, 9)
    control.apply(trainer, command("clip", max_norm=None))
    drive(trainer, 10)
    trainer.flush()
    trainer.recorder.close()
    with RunReader(trainer.paths.root) as r:
        gn = list(r.read_metrics().columns["grad_norm"])
    assert all(math.isnan(v) for v in gn[:10]) and all(math.isnan(v) for v in gn[20:])
    assert all(v > 0.01 for v in gn[10:20])  # the norm before clipping is what is recorded
