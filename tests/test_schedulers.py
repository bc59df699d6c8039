"""An lr edit under any torch scheduler keeps the schedule's shape."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jobs import command, drive, make_trainer, tiny_job
from torch.optim import lr_scheduler as S

from optitui.trainer.control.commands import Rejection

Factory = Callable[[Any], Any]

SCHEDULERS: dict[str, Factory] = {
    "StepLR": lambda o: S.StepLR(o, step_size=10, gamma=0.5),
    "MultiStepLR": lambda o: S.MultiStepLR(o, milestones=[20, 40, 60], gamma=0.3),
    "ExponentialLR": lambda o: S.ExponentialLR(o, gamma=0.97),
    "CosineAnnealingLR": lambda o: S.CosineAnnealingLR(o, T_max=50),
    "CosineAnnealingWarmRestarts": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=15, T_mult=2),
    "OneCycleLR": lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=200),
    "CyclicLR": lambda o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=10),
    "LambdaLR": lambda o: S.LambdaLR(o, lambda s: 1 / (1 + 0.05 * s)),
    "MultiplicativeLR": lambda o: S.MultiplicativeLR(o, lambda s: 0.98),
    "LinearLR": lambda o: S.LinearLR(o, start_factor=0.1, total_iters=40),
    "ConstantLR": lambda o: S.ConstantLR(o, factor=0.5, total_iters=40),
    "PolynomialLR": lambda o: S.PolynomialLR(o, total_iters=100, power=2.0),
    "SequentialLR": lambda o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=0.1, total_iters=20), S.ExponentialLR(o, 0.95)], [20]
    ),
    "ChainedScheduler": lambda o: S.ChainedScheduler(
        [S.ExponentialLR(o, gamma=0.98), S.StepLR(o, step_size=10, gamma=0.5)]
    ),
}
STEPS, EDIT_AT = 90, 30


def _trainer(tmp_path: Path, name: str, factory: Factory) -> Any:
    job = tiny_job("SGD", {"lr": 0.1, "momentum": 0.9})
    job.scheduler = factory(job.optimizer)
    return make_trainer(tmp_path, job, name=name)


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_doubling_keeps_the_shape(tmp_path: Path, name: str) -> None:
    plain = drive(_trainer(tmp_path, "plain", SCHEDULERS[name]), STEPS)
    edited = drive(
        _trainer(tmp_path, "edited", SCHEDULERS[name]),
        STEPS,
        {EDIT_AT: [command("scale-lr", factor=2.0, group="head")]},
    )
    assert edited[:EDIT_AT] == plain[:EDIT_AT]
    for t in range(EDIT_AT, STEPS):
        assert edited[t][0] == plain[t][0], (t, "the other group must not change")
        assert math.isclose(edited[t][1], 2 * plain[t][1], rel_tol=1e-12), (t, edited[t], plain[t])
    # the schedule really moved over the run, so the check above is not trivial
    assert len({round(lr[1], 12) for lr in plain[EDIT_AT:]}) >= 2


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_set_gives_that_lr_at_the_next_step(tmp_path: Path, name: str) -> None:
    plain = drive(_trainer(tmp_path, "plain", SCHEDULERS[name]), STEPS)
    edited = drive(
        _trainer(tmp_path, "edited", SCHEDULERS[name]),
        STEPS,
        {EDIT_AT: [command("set", values={"lr": 0.0123})]},
    )
    assert edited[EDIT_AT] == [0.0123, 0.0123]
    m = [0.0123 / plain[EDIT_AT][i] for i in range(2)]
    for t in range(EDIT_AT, STEPS):  # and the schedule's shape from there on
        for i in range(2):
            assert math.isclose(edited[t][i], plain[t][i] * m[i], rel_tol=1e-9)


def test_reduce_on_plateau_is_set_directly(tmp_path: Path) -> None:
    job = tiny_job("SGD", {"lr": 0.1}, val_data=[], val_every=None)
    job.scheduler = S.ReduceLROnPlateau(job.optimizer, factor=0.5, patience=0)
    trainer = make_trainer(tmp_path, job)
    lrs = drive(trainer, 5, {2: [command("set", values={"lr": 0.07}, group=0)]})
    assert lrs[2] == [0.07, 0.1] and lrs[4] == [0.07, 0.1]
    assert trainer.lr.mult == [1.0, 1.0]
    trainer.lr.step_scheduler(1.0)  # a first metric, then a worse one: the plateau halves lr
    trainer.lr.step_scheduler(2.0)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.035, 0.05]


def test_momentum_driven_by_the_scheduler_is_refused(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "cyc", SCHEDULERS["OneCycleLR"])
    drive(trainer, 3)
    with pytest.raises(Rejection, match="momentum: driven by OneCycleLR"):
        drive(trainer, 1, {3: [command("set", values={"momentum": 0.5})]})
    # detached, the scheduler no longer drives it: the edit goes through, the lr stays put
    lrs = drive(
        trainer,
        5,
        {4: [command("scheduler", action="detach"), command("set", values={"momentum": 0.5})]},
    )
    assert all(lr == lrs[1] for lr in lrs[1:])  # lrs[0] is step 3, before the detach
    assert trainer.optimizer.param_groups[0]["momentum"] == 0.5


def test_detach_and_attach(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "exp", SCHEDULERS["ExponentialLR"])
    lrs = drive(
        trainer,
        30,
        {
            5: [command("scale-lr", factor=2.0)],
            10: [command("scheduler", action="detach")],
            20: [command("scheduler", action="attach")],
        },
    )
    assert lrs[10] == lrs[19]  # detached: the lr stays where it was
    assert lrs[10][0] == pytest.approx(0.1 * 0.97**10 * 2)
    assert lrs[21][0] == pytest.approx(lrs[20][0] * 0.97)  # re-attached: decays from there
    assert trainer.lr.mult == [1.0, 1.0]


def test_no_scheduler_to_detach(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tiny_job())
    with pytest.raises(Rejection, match="no scheduler"):
        drive(trainer, 1, {0: [command("scheduler", action="detach")]})
