"""The LR range test on a live job: exact restore, cancel, failure, ratios, parity."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from jobs import command, drive, make_trainer, regression_data, tiny_job
from torch import nn
from torch.utils.data import DataLoader

from optitui.lrfind import SweepConfig, steep
from optitui.store.commands import Command
from optitui.store.reader import RunReader
from optitui.trainer.control import commands as control
from optitui.trainer.control import rangetest
from optitui.trainer.core.job import Job
from optitui.trainer.loop.trainer import Trainer

N, AT = 40, 13


def dropout_job(**kw: Any) -> Job:
    """AdamW, dropout (so the RNG matters), a shuffling loader, and a cosine schedule."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 1))
    opt = torch.optim.AdamW(
        [
            {"params": model[0].parameters(), "name": "body", "lr": 0.01},
            {"params": model[3].parameters(), "name": "head", "lr": 0.004},
        ]
    )
    # (eta_min > 0: a range test sent at a step where every lr is 0 is refused)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30, eta_min=1e-4)
    data = DataLoader(
        regression_data(), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    return Job(
        model=model,
        optimizer=opt,
        train_data=data,
        loss_fn=nn.functional.mse_loss,
        scheduler=sched,
        **kw,
    )


def params(t: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in t.model.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def straight(tmp_path: Path) -> list[torch.Tensor]:
    t = make_trainer(tmp_path, dropout_job(), name="straight")
    drive(t, N)
    return params(t)


@pytest.mark.parametrize("to_disk", [False, True])
def test_a_range_test_mid_run_changes_nothing(tmp_path: Path, to_disk: bool) -> None:
    want = straight(tmp_path)
    t = make_trainer(tmp_path, dropout_job(), name="tested")
    drive(t, N, {AT: [command("lr-find", num_iter=30, to_disk=to_disk)]})
    (test,) = t.range_tests.values()
    assert test.status in ("done",) and len(test.lrs) >= 10
    assert test.step == AT
    assert same(params(t), want)  # bit-identical: the test left no trace
    assert not list(t.paths.root.glob(".lrfind-*"))  # the disk snapshot is gone
    rules = [s["rule"] for s in test.suggestions]
    assert rules == ["steep", "valley", "minimum", "slide"]


def test_cancel_restores(tmp_path: Path) -> None:
    want = straight(tmp_path)
    t = make_trainer(tmp_path, dropout_job(), name="cancelled")
    drive(t, AT)
    control.apply(t, command("lr-find", num_iter=50))
    assert t.pending_test is not None
    # a cancel arriving while the sweep runs: the sweep sees it between iterations
    t.commands.append(Command("c1", "lr-find-cancel", {}, "{}"))
    test = t.run_range_test(t.pending_test)
    assert test.status == "cancelled" and test.suggestions == []
    drive(t, N - AT)
    assert same(params(t), want)
    t.recorder.close()
    with RunReader(t.paths.root) as r:
        out = r.outcome("c1")
        assert out is not None and out.applied
        (stored,) = r.range_tests()
        assert stored.status == "cancelled"


def test_failing_step_restores(tmp_path: Path) -> None:
    calls = {"n": 0}

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        calls["n"] += 1
        if calls["armed"] and calls["n"] > 5:
            raise RuntimeError("bad batch")
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    calls["armed"] = 0
    job = dropout_job()
    job.loss_fn, job.step_fn = None, step_fn
    t = make_trainer(tmp_path, job, name="failing")
    drive(t, AT)
    before = params(t)
    opt_state = {
        k: v.clone() for k, v in t.optimizer.state[t.optimizer.param_groups[0]["params"][0]].items()
    }
    calls["armed"], calls["n"] = 1, 0
    drive(t, 0, {})
    control.apply(t, command("lr-find", num_iter=50))
    test = t.run_range_test(t.pending_test)  # type: ignore[arg-type]
    assert test.status == "failed" and "bad batch" in (test.message or "")
    assert same(params(t), before)
    st = t.optimizer.state[t.optimizer.param_groups[0]["params"][0]]
    assert all(torch.equal(st[k], v) for k, v in opt_state.items())
    calls["armed"] = 0
    drive(t, 3)  # and training goes on


def test_ratios_are_kept_through_sweep_and_apply(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, dropout_job(), name="ratios")
    drive(t, 5)
    seen: list[list[float]] = []
    step = t.optimizer.step

    def spy(*a: Any, **k: Any) -> Any:
        seen.append([g["lr"] for g in t.optimizer.param_groups])
        return step(*a, **k)

    t.optimizer.step = spy  # type: ignore[method-assign]
    before = [g["lr"] for g in t.optimizer.param_groups]
    control.apply(t, command("lr-find", num_iter=25))
    test = t.run_range_test(t.pending_test)  # type: ignore[arg-type]
    t.optimizer.step = step  # type: ignore[method-assign]
    assert len(seen) == len(test.lrs)
    for lrs, ref in zip(seen, test.lrs, strict=True):
        assert lrs[0] == ref and math.isclose(lrs[1] / lrs[0], before[1] / before[0], rel_tol=1e-12)
    assert [g["lr"] for g in t.optimizer.param_groups] == before  # restored
    rule = next(s for s in test.suggestions if s["lr"] is not None)
    control.apply(t, command("lr-find-apply", id="latest", rule=rule["rule"]))
    after = [g["lr"] for g in t.optimizer.param_groups]
    assert math.isclose(after[0], rule["lr"], rel_tol=1e-12)
    assert math.isclose(after[1] / after[0], before[1] / before[0], rel_tol=1e-12)
    assert t.lr.mult[0] == pytest.approx(rule["factor"])  # scheduler-aware: a multiplier


def test_single_group_sweep_and_apply(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, dropout_job(), name="single")
    drive(t, 5)
    before = [g["lr"] for g in t.optimizer.param_groups]
    control.apply(t, command("lr-find", num_iter=20, group="head"))
    test = t.run_range_test(t.pending_test)  # type: ignore[arg-type]
    assert test.single and test.ref == 1 and test.targets == [1]
    rule = next(s for s in test.suggestions if s["lr"] is not None)
    control.apply(t, command("lr-find-apply", id=test.id, rule=rule["rule"]))
    after = [g["lr"] for g in t.optimizer.param_groups]
    assert after[0] == before[0] and math.isclose(after[1], rule["lr"], rel_tol=1e-12)


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, tiny_job())
    with pytest.raises(control.Rejection, match="no range test has run"):
        control.apply(t, command("lr-find-apply", id="latest", rule="steep"))
    with pytest.raises(control.Rejection, match="no range test is running"):
        control.apply(t, command("lr-find-cancel"))
    with pytest.raises(control.Rejection, match="group 9 does not exist"):
        control.apply(t, command("lr-find", group=9))
    from optitui.store.commands import CommandError, validate

    for bad, msg in [
        ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr"),
        ({"num_iter": 1}, "num_iter"),
        ({"mode": "cubic"}, "mode"),
    ]:
        with pytest.raises(CommandError, match=msg):
            validate("lr-find", bad)


def test_live_job_answers_and_records_the_curve(tmp_path: Path, run_in_thread: Any) -> None:
    from conftest import wait_for

    from optitui.store import client

    t = make_trainer(tmp_path, dropout_job(), name="live", flush_every=8)
    run_in_thread(t)
    reader = RunReader(t.paths.root)
    wait_for(lambda: reader.read_metrics().length > 20, what="training")
    sent = client.send(t.paths, "lr-find", {"num_iter": 40})
    assert sent.outcome is not None and sent.outcome.applied
    wait_for(
        lambda: [x for x in reader.range_tests(sent.id) if x.status == "done"],
        30,
        "range test done",
    )
    (done,) = reader.range_tests(sent.id)
    assert done.step == sent.outcome.step and len(done.lrs) == len(done.losses) > 10
    markers = [e for e in reader.events() if e.data and e.data.get("marker") == "lr-find"]
    assert len(markers) == 2  # started, finished: where the test ran shows on the plots
    steps = list(reader.read_metrics().columns["step"])
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # no rewind: one branch


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_steep_matches_torch_lr_finder(tmp_path: Path, seed: int) -> None:
    lr_finder = pytest.importorskip("torch_lr_finder")
    data = regression_data(256, seed)

    def model() -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))

    m1 = model()
    opt1 = torch.optim.SGD(m1.parameters(), lr=1e-4, momentum=0.9)
    finder = lr_finder.LRFinder(m1, opt1, nn.MSELoss(), device="cpu")
    loader = DataLoader(data, batch_size=32)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        finder.range_test(
            loader,
            start_lr=1e-4,
            end_lr=10,
            num_iter=60,
            step_mode="exp",
            smooth_f=0.05,
            diverge_th=5,
        )
    theirs_lr, theirs_loss = finder.history["lr"], finder.history["loss"]
    import numpy as np

    lrs, losses = theirs_lr[10:-5], theirs_loss[10:-5]  # what LRFinder.plot(suggest_lr=True) does
    theirs = lrs[int(np.gradient(np.array(losses)).argmin())]

    m2 = model()
    job = Job(
        model=m2,
        optimizer=torch.optim.SGD(m2.parameters(), lr=1e-4, momentum=0.9),
        train_data=DataLoader(data, batch_size=32),
        loss_fn=nn.functional.mse_loss,
    )
    t = make_trainer(tmp_path, job, name=f"ours{seed}")
    cfg = SweepConfig(
        start_lr=1e-4,
        end_lr=10,
        num_iter=60,
        mode="exp",
        smooth_f=0.05,
        bias_correction=False,
        diverge_th=5,
        skip_start=10,
        skip_end=5,
    )
    test = rangetest.RangeTest("parity", cfg, [0], 0, False, False, 0, base=[1e-4])
    rangetest.run(t, test)
    assert test.lrs == theirs_lr and test.smoothed == theirs_loss  # the same curve
    ours = steep(test.lrs, test.smoothed, skip_start=10, skip_end=5, against="index")
    assert ours.lr == theirs
