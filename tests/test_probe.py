"""optitui.watch on a loop the user wrote: records, commands, pause, stop, checkpoints,
the in-flight range test, the sync count, and ``optitui run`` on such a script."""

from __future__ import annotations

import copy
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, wait_for, write_script
from jobs import command
from torch import nn
from torch.optim import lr_scheduler as S

from optitui.store.client import send
from optitui.store.reader import RunReader
from optitui.trainer.core import checkpoint
from optitui.trainer.probe.watch import Probe, StopTraining, watch

Batch = tuple[torch.Tensor, torch.Tensor]
OPTITUI_RUN = (sys.executable, "-m", "optitui", "run")


def batches(n: int, seed: int = 0) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 1, generator=g)
    out = []
    for _ in range(n):
        x = torch.randn(16, 8, generator=g)
        out.append((x, x @ w + 0.1 * torch.randn(16, 1, generator=g)))
    return out


def make(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    """AdamW with two groups, dropout (the RNG matters), a cosine schedule."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 1))
    opt = torch.optim.AdamW(
        [
            {"params": model[0].parameters(), "name": "body", "lr": 0.01},
            {"params": model[3].parameters(), "name": "head", "lr": 0.004},
        ]
    )
    return model, opt, S.CosineAnnealingLR(opt, T_max=60)


def train(model: nn.Module, opt: torch.optim.Optimizer, batch: Batch) -> torch.Tensor:
    x, y = batch
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    opt.step()
    return loss


class LrLog:
    """The lr of every group at each optimizer.step(), as the optimizer really used it."""

    def __init__(self, opt: torch.optim.Optimizer) -> None:
        self.rows: list[list[float]] = []
        opt.register_step_pre_hook(
            lambda o, a, k: self.rows.append([g["lr"] for g in o.param_groups])
        )


def params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict):
            if not isinstance(y, dict) or not same_state(x, y):
                return False
        elif isinstance(x, torch.Tensor):
            if not torch.equal(x, y):
                return False
        elif x != y:
            return False
    return True


def opt_state(opt: torch.optim.Optimizer) -> dict[str, Any]:
    sd = copy.deepcopy(opt.state_dict())  # its tensors are the live ones otherwise
    return {"state": {str(k): v for k, v in sd["state"].items()}, "groups": sd["param_groups"]}


def test_records_the_loss_and_the_lr_each_step_used(tmp_path: Path) -> None:
    model, opt, sched = make()
    log = LrLog(opt)
    losses = []
    with watch(opt, model, scheduler=sched, run_dir=tmp_path / "r", flush_every=8) as probe:
        for b in batches(30):
            loss = train(model, opt, b)
            losses.append(loss.item())
            probe.step(loss, samples=16)
            sched.step()
        assert probe.steps == 30
    with RunReader(tmp_path / "r") as r:
        m = r.read_metrics()
        st = r.status()
        assert m.length == 30 and st.state == "finished" and (st.samples_per_s or 0) > 0
        assert list(m.columns["loss"]) == pytest.approx(losses, rel=1e-6)
        for i in (0, 1):  # every group, the value before the scheduler moved it
            assert list(m.columns[f"lr/{i}"]) == [row[i] for row in log.rows]
        assert r.meta()["probe"] == {"mode": "watch", "limits": []}
        assert r.meta()["scheduler"] == "CosineAnnealingLR"
    assert type(sched) is S.CosineAnnealingLR  # the wrapper is gone after close


@pytest.mark.parametrize("clip", [None, 1.0])
def test_one_read_per_flush(tmp_path: Path, sync_counter: Counter[str], clip: float | None) -> None:
    model, opt, sched = make()
    data = batches(10)
    steps, every = 400, 50
    probe = Probe(
        opt, model, scheduler=sched, run_dir=tmp_path / "r", flush_every=every, flush_seconds=1e9
    )
    assert probe.trainer is not None
    probe.trainer.clip = clip
    for s in range(steps):
        probe.step(train(model, opt, data[s % 10]))
        sched.step()
    probe.close()
    # one read per flush: the losses, and the grad norms when clipping, together
    assert sync_counter == Counter({"tolist": steps // every})
    with RunReader(tmp_path / "r") as r:
        cols = r.read_metrics()
        assert cols.length == steps and ("grad_norm" in cols.columns) == bool(clip)


class LoopThread:
    """The user's loop in a thread, so the test can steer it through the run store."""

    def __init__(self, probe: Probe, model: nn.Module, opt: torch.optim.Optimizer, sched: Any):
        self.probe = probe
        self.error: BaseException | None = None
        self.log = LrLog(opt)
        self.data = batches(50)
        self.model, self.opt, self.sched = model, opt, sched
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            s = 0
            while not self.probe.should_stop:
                self.probe.step(train(self.model, self.opt, self.data[s % 50]))
                self.sched.step()
                s += 1
            self.probe.close()
        except BaseException as exc:
            self.error = exc


def test_steering_through_the_store(tmp_path: Path) -> None:
    """An lr edit takes effect at the next step for every group and keeps the schedule's
    shape; pause freezes the step count, resume and stop work."""
    model, opt, sched = make()
    probe = watch(opt, model, scheduler=sched, run_dir=tmp_path / "r", flush_every=4)
    assert probe.trainer is not None
    paths = probe.trainer.paths
    loop = LoopThread(probe, model, opt, sched)
    wait_for(lambda: probe.steps > 5, what="steps")
    out = send(paths, "scale-lr", {"factor": 0.5}).outcome
    assert out is not None and out.applied
    at = out.step
    wait_for(lambda: len(loop.log.rows) > at + 3, what="steps after the edit")
    plain = make()[2]  # the unscaled schedule, for comparison
    lrs = []
    for _ in range(out.step + 3):
        lrs.append([g["lr"] for g in plain.optimizer.param_groups])
        plain.optimizer.step()  # no gradients: changes nothing, keeps torch's order check quiet
        plain.step()
    for s in (out.step - 1, out.step, out.step + 1, out.step + 2):
        factor = 0.5 if s >= out.step else 1.0
        for i in (0, 1):
            assert loop.log.rows[s][i] == pytest.approx(lrs[s][i] * factor, rel=1e-12), (s, i)

    out = send(paths, "pause").outcome
    assert out is not None and out.applied
    wait_for(lambda: probe.state == "paused", what="paused")
    frozen = probe.steps
    threading.Event().wait(0.4)
    assert probe.steps == frozen and len(loop.log.rows) == frozen
    with RunReader(paths.root) as r:
        assert r.status().state == "paused"
    assert send(paths, "resume").outcome.applied  # type: ignore[union-attr]
    wait_for(lambda: probe.steps > frozen + 5, what="steps after resume")
    assert send(paths, "stop").outcome.applied  # type: ignore[union-attr]
    loop.thread.join(10)
    assert loop.error is None and not loop.thread.is_alive()
    with RunReader(paths.root) as r:
        st = r.status()
        assert st.state == "stopped" and st.message == "stop command"
        assert r.read_metrics().length == st.step == probe.steps


def test_stop_flags_then_raises_for_a_loop_that_ignores_it(tmp_path: Path) -> None:
    model, opt, _ = make()
    data = batches(10)
    probe = watch(opt, model, run_dir=tmp_path / "flag")
    assert probe.trainer is not None
    probe.step(train(model, opt, data[0]))
    probe.trainer.commands.append(command("stop"))
    probe.step(train(model, opt, data[1]))  # applied at this boundary: no exception yet
    assert probe.should_stop and probe.stop_reason == "stop command"
    with pytest.raises(StopTraining, match="stop command"):
        probe.step(train(model, opt, data[2]))  # the loop went on regardless
    probe.close()
    with RunReader(tmp_path / "flag") as r:
        assert r.status().state == "stopped" and r.read_metrics().length == 3

    model, opt, _ = make()
    eager = Probe(opt, model, run_dir=tmp_path / "raise", on_stop="raise")
    assert eager.trainer is not None
    eager.trainer.commands.append(command("stop"))
    with pytest.raises(StopTraining):
        eager.step(train(model, opt, data[0]))
    eager.close(StopTraining("stop command"))
    with RunReader(tmp_path / "raise") as r:
        assert r.status().state == "stopped"


def test_max_steps_and_a_failed_run(tmp_path: Path) -> None:
    model, opt, _ = make()
    data = batches(10)
    probe = watch(opt, model, run_dir=tmp_path / "capped", max_steps=4)
    n = 0
    while not probe.should_stop:
        probe.step(train(model, opt, data[n]))
        n += 1
    probe.close()
    assert n == 4
    with RunReader(tmp_path / "capped") as r:
        assert (r.status().state, r.status().message) == ("finished", "4 steps done")

    model, opt, _ = make()
    with pytest.raises(ZeroDivisionError), watch(opt, model, run_dir=tmp_path / "boom") as p:
        p.step(train(model, opt, data[0]))
        _ = 1 / 0
    with RunReader(tmp_path / "boom") as r:
        assert r.status().state == "failed"
        assert any("ZeroDivisionError" in e.message for e in r.events())


def test_swap_is_refused_and_watch_is_idempotent(tmp_path: Path) -> None:
    model, opt, _ = make()
    probe = watch(opt, model, run_dir=tmp_path / "r")
    assert watch(opt, model) is probe
    assert probe.trainer is not None
    probe.trainer.commands.append(command("swap-optimizer", name="SGD"))
    probe.step(train(model, opt, batches(1)[0]))
    probe.close()
    with RunReader(tmp_path / "r") as r:
        out = r.outcome("test-swap-optimizer")
        assert out is not None and not out.applied and "holds its optimizer" in str(out.reason)


def test_save_and_restore_from_the_store(tmp_path: Path) -> None:
    """A checkpoint saved from the dashboard comes back: weights, optimizer, schedule, step."""
    model, opt, sched = make()
    probe = watch(opt, model, scheduler=sched, run_dir=tmp_path / "r")
    assert probe.trainer is not None
    data = batches(30)
    for s in range(10):
        probe.step(train(model, opt, data[s]))
        sched.step()
    saved = params(model), opt_state(opt), sched.state_dict()
    probe.trainer.commands.append(command("save", tag="ten"))
    probe.step(train(model, opt, data[10]))  # the save is taken at this boundary (step 11)
    saved = params(model), opt_state(opt), dict(sched.state_dict())
    sched.step()
    for s in range(11, 20):
        probe.step(train(model, opt, data[s]))
        sched.step()
    assert not same(params(model), saved[0])
    assert probe.trainer.saver is not None
    probe.trainer.saver.wait()
    (m,) = checkpoint.listing(probe.trainer.paths.checkpoints)
    assert (m.step, m.tag) == (11, "ten")
    probe.trainer.commands.append(command("restore", id=m.id))
    probe.step(train(model, opt, data[20]))
    assert same(params(model), saved[0]) and same_state(opt_state(opt), saved[1])
    assert probe.steps == 11 and sched.state_dict() == saved[2]
    probe.close()


def test_params_only_without_a_model(tmp_path: Path) -> None:
    w = torch.zeros(3, requires_grad=True)  # a plain leaf tensor, not a Parameter
    opt = torch.optim.SGD([w], lr=0.1)
    probe = watch(opt, run_dir=tmp_path / "r")
    assert probe.trainer is not None
    for _ in range(3):
        loss = ((w - 1.0) ** 2).sum()
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        probe.step(loss)
    probe.trainer.commands.append(command("save"))
    probe.step(None)  # no loss this time: recorded as NaN
    kept = w.detach().clone()
    with torch.no_grad():
        w.add_(5.0)
    probe.trainer.saver.wait()  # type: ignore[union-attr]
    (m,) = checkpoint.listing(probe.trainer.paths.checkpoints)
    probe.trainer.commands.append(command("restore", id=m.id))
    probe.step(None)
    assert torch.equal(w.detach(), kept)
    probe.close()


def _run_a(tmp_path: Path, at: int, after: int) -> tuple[list[torch.Tensor], int, Any]:
    model, opt, sched = make()
    log = LrLog(opt)
    data = iter(batches(200, seed=3))
    probe = watch(opt, model, scheduler=sched, run_dir=tmp_path / "a")
    assert probe.trainer is not None
    for s in range(at):
        loss = train(model, opt, next(data))
        if s == at - 1:
            probe.trainer.commands.append(command("lr-find", num_iter=15, end_lr=1.0))
            before = params(model), opt_state(opt)
        probe.step(loss)
        sched.step()
    assert probe.state == "lr-find"
    used = 0
    while probe.state == "lr-find":
        loss = train(model, opt, next(data))
        used += 1
        probe.step(loss)
        if probe.state != "lr-find":  # restored at this boundary, before sched.step()
            assert same(params(model), before[0]) and same_state(opt_state(opt), before[1])
        sched.step()
    test = probe.trainer.range_tests["test-lr-find"]
    assert test.status == "done" and len(test.lrs) == used and test.suggestions
    # each test step really ran at the swept lr (the user's scheduler.step() was held off)
    assert [row[0] for row in log.rows[at : at + used]] == pytest.approx(test.lrs, rel=1e-9)
    assert probe.steps == at
    for _ in range(after):
        probe.step(train(model, opt, next(data)))
        sched.step()
    probe.close()
    return params(model), used, test


def test_range_test_in_flight_leaves_no_trace(tmp_path: Path) -> None:
    """Over the loop's next steps the lr is swept and the losses recorded; then model,
    optimizer, scheduler and RNG are put back, so training goes on exactly as if those
    batches had been skipped (bit-identical on CPU)."""
    at, after = 12, 15
    got, used, test = _run_a(tmp_path, at, after)
    assert test.lrs == sorted(test.lrs) and test.lrs[0] < test.lrs[-1]
    model, opt, sched = make()
    data = iter(batches(200, seed=3))
    for _ in range(at):
        train(model, opt, next(data))
        sched.step()
    for _ in range(used):
        next(data)  # the batches the test consumed
    for _ in range(after):
        train(model, opt, next(data))
        sched.step()
    assert same(got, params(model))
    with RunReader(tmp_path / "a") as r:
        (rt,) = r.range_tests()
        assert rt.status == "done" and rt.lrs == test.lrs
        assert r.read_metrics().length == at + after  # the test's steps are not training steps


def test_optitui_run_on_an_own_loop_script(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        """
        import sys
        import torch
        from torch import nn
        import optitui

        torch.manual_seed(0)
        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        probe = optitui.watch(opt, model=model)
        x = torch.randn(64, 4)
        y = x.sum(1, keepdim=True)
        for step in range(1000):
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            probe.step(loss)
            if probe.should_stop:
                break
        print("argv", sys.argv, "name", __name__)
        """,
        name="own_loop.py",
    )
    run_dir = tmp_path / "run"
    out = subprocess.run(
        [*OPTITUI_RUN, str(script), "--headless", "--run-dir", str(run_dir), "--max-steps", "40"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"argv ['{script}'] name __main__" in out.stdout
    with RunReader(run_dir) as r:
        st = r.status()
        assert (st.state, st.step, st.message) == ("finished", 40, "40 steps done")
        assert r.read_metrics().length == 40
        assert r.meta()["script"] == str(script.resolve()) and r.meta()["mode"] == "headless"


def test_importing_the_integrations_loads_no_framework() -> None:
    code = (
        "import sys, optitui, optitui.integrations\n"
        "assert callable(optitui.__getattr__)\n"
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert not loaded & {"torch", "lightning", "pytorch_lightning", "transformers"}
