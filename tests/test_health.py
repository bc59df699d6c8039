"""Optimizer health per param group: gradient norm, parameter norm, update ratio.

Checked against a direct computation (the gradients the step used, the parameters
before it, the difference the step made) for every optimizer class in torch.optim,
through the trainer, the probe and the export; no read of its own; nothing with
``health_every=0``; a step the GradScaler skipped is not measured."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
from collections import Counter, deque
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_script
from jobs import command, drive, make_trainer, tiny_job
from torch import nn

import optitui
from optitui.store import export
from optitui.store.reader import RunReader
from optitui.trainer.core import health as health_mod
from optitui.trainer.core.health import Health
from optitui.trainer.core.job import JobError

OPTIMIZERS = sorted(
    name
    for name, cls in vars(torch.optim).items()
    if isinstance(cls, type)
    and issubclass(cls, torch.optim.Optimizer)
    and cls is not torch.optim.Optimizer
)


def _takes(name: str, arg: str) -> bool:
    return arg in inspect.signature(getattr(torch.optim, name)).parameters


def _decays(name: str) -> list[float]:
    return [0.0, 0.1] if _takes(name, "weight_decay") else [0.0]


def _fused(name: str) -> list[bool]:
    return [False, True] if _takes(name, "fused") else [False]


CASES = [(n, wd, f) for n in OPTIMIZERS for wd in _decays(n) for f in _fused(n)]


def _flat(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.to_dense().double().reshape(-1) for t in ts])


def direct(
    before: list[list[torch.Tensor]],
    grads: list[list[torch.Tensor]],
    after: list[list[torch.Tensor]],
) -> list[tuple[float, float, float]]:
    """Per group (‖g‖, ‖w‖, ‖w_after - w‖ / ‖w‖), in float64."""
    out = []
    for w0, g, w1 in zip(before, grads, after, strict=True):
        wn = float(_flat(w0).norm())
        dn = float((_flat(w1) - _flat(w0)).norm())
        out.append((float(_flat(g).norm()) if g else 0.0, wn, dn / wn))
    return out


def _copies(opt: torch.optim.Optimizer) -> list[list[torch.Tensor]]:
    return [[p.detach().clone() for p in g["params"]] for g in opt.param_groups]


def _grads(opt: torch.optim.Optimizer) -> list[list[torch.Tensor]]:
    return [[p.grad.clone() for p in g["params"] if p.grad is not None] for g in opt.param_groups]


def _setup(name: str, wd: float, fused: bool) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    """A two-group model the optimizer class can train, and a loss closure."""
    torch.manual_seed(0)
    cls = getattr(torch.optim, name)
    kw: dict[str, Any] = {"lr": 0.05}
    if wd:
        kw["weight_decay"] = wd
    if fused:
        kw["fused"] = True
    if name == "SparseAdam":  # sparse gradients only
        model: nn.Module = nn.ModuleList([nn.Embedding(10, 4, sparse=True) for _ in range(2)])
        idx = torch.tensor([1, 3, 3, 7])

        def loss_fn() -> torch.Tensor:
            return (model[0](idx) * model[1](idx)).sum() ** 2 * 0.01  # type: ignore[operator]

    else:
        bias = name != "Muon"  # Muon trains 2-D matrices only
        model = nn.Sequential(nn.Linear(6, 5, bias=bias), nn.Tanh(), nn.Linear(5, 3, bias=bias))
        x, y = torch.randn(16, 6), torch.randn(16, 3)

        def loss_fn() -> torch.Tensor:
            return nn.functional.mse_loss(model(x), y)

    groups = [
        {"params": list(model[0].parameters())},
        {"params": list(model[-1].parameters()), "lr": 0.02},
    ]
    if name == "LBFGS":  # one group only
        return model, cls([p for g in groups for p in g["params"]], lr=0.5), loss_fn
    return model, cls(groups, **kw), loss_fn


def _step(
    name: str, opt: torch.optim.Optimizer, loss_fn: Any
) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """One step of ``opt``: the parameters before it and the gradients it used."""
    opt.zero_grad()
    if name == "LBFGS":

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        before = _copies(opt)
        opt.step(closure)
        return before, _grads(opt)  # LBFGS: the gradient of its last closure evaluation
    loss_fn().backward()
    before, grads = _copies(opt), _grads(opt)
    opt.step()
    return before, grads


@pytest.mark.parametrize(
    ("name", "wd", "fused"), CASES, ids=[f"{n}-wd{w}" + ("-fused" * f) for n, w, f in CASES]
)
def test_health_matches_a_direct_computation_for_every_optimizer(
    name: str, wd: float, fused: bool
) -> None:
    _, opt, loss_fn = _setup(name, wd, fused)
    h = Health(1)
    for step in range(3):
        h.arm(step, opt)
        before, grads = _step(name, opt, loss_fn)
        got = h.take()
        assert got is not None
        rows = got.read()
        assert len(rows) == len(opt.param_groups)
        want = direct(before, grads, _copies(opt))
        for (g, w, d), (gn, wn, ratio) in zip(rows, want, strict=True):
            assert [g, w, d / w] == pytest.approx([gn, wn, ratio], rel=1e-4, abs=1e-7), step
            assert ratio > 0  # the step moved the group
    h.detach()
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_a_layer_frozen_and_a_group_added_mid_run_are_measured_as_they_now_are() -> None:
    """The groups' layout is kept between measurements while it holds: a tensor frozen
    (it then counts in ‖w‖ only) and a group added change it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3), nn.Linear(3, 2))
    x, y = torch.randn(16, 6), torch.randn(16, 2)
    opt = torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=0.05
    )
    h = Health(1)
    for step in range(6):
        if step == 2:
            model[0].weight.requires_grad_(False)
        if step == 4:
            opt.add_param_group({"params": model[3].parameters(), "lr": 0.01})
        opt.zero_grad(set_to_none=True)
        h.arm(step, opt)
        nn.functional.mse_loss(model(x), y).backward()
        if step < 4:
            model[3].zero_grad(set_to_none=True)  # (not in the optimizer yet)
        before, grads = _copies(opt), _grads(opt)
        opt.step()
        got = h.take()
        assert got is not None
        rows = got.read()
        want = direct(before, grads, _copies(opt))
        assert len(rows) == len(want) == (3 if step >= 4 else 2)
        for (g, w, d), (gn, wn, ratio) in zip(rows, want, strict=True):
            assert [g, w, d / w] == pytest.approx([gn, wn, ratio], rel=1e-4), step
        if step >= 2:  # the frozen weight: in ‖w‖, not in ‖g‖
            assert rows[0][1] > float(model[0].bias.detach().norm())
            assert rows[0][0] == pytest.approx(float(model[0].bias.grad.norm()), rel=1e-5)


def test_hooks_are_on_a_measured_loop_step_only_and_never_on_the_trainers(
    tmp_path: Path,
) -> None:
    """A loop's own step is hooked for the health step only (the steps between pay no
    hook call); the trainer's own step needs none (it copies before, measures after)."""
    job = tiny_job(max_steps=8, health_every=1)
    t = make_trainer(tmp_path, job, flush_every=4, flush_seconds=1e9)
    t._start()
    opt = t.optimizer
    seen: list[int] = []
    opt.register_step_post_hook(lambda o, a, k: seen.append(len(o._optimizer_step_pre_hooks)))
    for _ in range(4):
        t._train_step()
        t.step += 1
    t.flush()
    t.recorder.close()
    assert seen == [0, 0, 0, 0]

    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    probe = optitui.watch(opt, model=model, run_dir=tmp_path / "r", flush_every=4, health_every=3)
    hooked = []
    for _ in range(7):
        hooks = [*opt._optimizer_step_pre_hooks.values(), *opt._optimizer_step_post_hooks.values()]
        hooked.append(sum(isinstance(getattr(h, "__self__", None), Health) for h in hooks))
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
        probe.step(torch.zeros(()))
    probe.close()
    assert hooked == [2, 0, 0, 2, 0, 0, 2]  # its pre- and post-hook
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


@pytest.mark.parametrize("fused", [False, True])
def test_the_trainers_fp16_steps_are_measured_and_the_skipped_ones_are_nan(
    tmp_path: Path, fused: bool
) -> None:
    """The trainer's own step under a GradScaler: measured after it (the gradients then
    unscaled, fused or not); a step the scaler skipped is NaN."""
    job = tiny_job(
        "SGD", {"lr": 1e-3, "fused": fused}, precision="fp16", max_steps=24, health_every=1
    )
    job.loss_fn = lambda out, y: nn.functional.mse_loss(out, y * 30)
    t = make_trainer(tmp_path, job, flush_every=8, flush_seconds=1e9)
    t.clip = 1e9  # records the true gradient norm, never clips
    assert t.run() == "finished"
    with RunReader(t.paths.root) as r:
        cols = r.read_metrics().columns
    skipped = list(cols["skipped"])
    assert skipped[0] == 1.0 and 0 < sum(skipped) < 24
    for s, k in enumerate(skipped):
        per_group = [[cols[f"{series}/{i}"][s] for series in health_mod.SERIES] for i in (0, 1)]
        if k:
            assert all(math.isnan(v) for row in per_group for v in row)
        else:
            total = math.hypot(per_group[0][0], per_group[1][0])
            assert total == pytest.approx(cols["grad_norm"][s], rel=1e-4)
            assert all(row[1] > 0 and row[2] > 0 for row in per_group)


# -- the trainer: recorded every health_every steps, exported by group name -----------------------
def _trainer_run(tmp_path: Path, every: int, steps: int = 12) -> Any:
    job = tiny_job("AdamW", {"lr": 0.01, "weight_decay": 0.1}, max_steps=steps, health_every=every)
    t = make_trainer(tmp_path, job, flush_every=5, flush_seconds=1e9)
    assert t.run() == "finished"
    return t


def _by_hand(steps: int) -> list[list[tuple[float, float, float]]]:
    """The same job stepped in a plain loop, measured directly at every step."""
    job = tiny_job("AdamW", {"lr": 0.01, "weight_decay": 0.1})
    out = []
    batches = [b for _ in range(2) for b in job.train_data]  # two epochs, as the trainer
    for x, y in batches[:steps]:
        job.optimizer.zero_grad(set_to_none=True)
        job.loss_fn(job.model(x), y).backward()  # type: ignore[misc]
        before, grads = _copies(job.optimizer), _grads(job.optimizer)
        job.optimizer.step()
        out.append(direct(before, grads, _copies(job.optimizer)))
    return out


def test_trainer_records_every_groups_health_on_the_interval(tmp_path: Path) -> None:
    t = _trainer_run(tmp_path, every=4)
    want = _by_hand(12)
    with RunReader(t.paths.root) as r:
        cols = r.read_metrics().columns
    for i in range(2):
        for k, series in enumerate(health_mod.SERIES):
            col = list(cols[f"{series}/{i}"])
            assert len(col) == 12
            for s in range(12):
                if s % 4 == 0:  # steps 1, 5, 9: measured
                    assert col[s] == pytest.approx(want[s][i][k], rel=1e-4), (series, i, s)
                else:
                    assert math.isnan(col[s])


def test_export_names_health_after_the_groups(tmp_path: Path) -> None:
    t = _trainer_run(tmp_path, every=4, steps=4)
    with RunReader(t.paths.root) as r:
        names, rows = export.rows(r)
        first = next(rows)
    for series in ("grad_norm", "param_norm", "update_ratio"):
        for group in ("body", "head"):  # tiny_job's groups are named
            assert f"{series}/{group}" in names
            assert isinstance(first[f"{series}/{group}"], float)
    assert first["update_ratio/body"] > 0


def test_health_every_zero_records_nothing_and_hooks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*a: Any) -> None:
        raise AssertionError("measured with health_every=0")

    monkeypatch.setattr(health_mod, "measure", never)
    monkeypatch.setattr(Health, "_pre", never)
    t = _trainer_run(tmp_path, every=0, steps=8)
    assert not t.optimizer._optimizer_step_pre_hooks
    assert not t.optimizer._optimizer_step_post_hooks
    with RunReader(t.paths.root) as r:
        names = list(r.read_metrics().columns)
    assert not [n for n in names if n.split("/")[0] in health_mod.SERIES]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "16"])
def test_a_bad_health_every_is_refused_naming_it(bad: Any) -> None:
    with pytest.raises(JobError, match="health_every"):
        tiny_job(health_every=bad).validate()
    with pytest.raises(ValueError, match="health_every"):
        Health(bad)


def test_health_adds_no_read_of_its_own(tmp_path: Path, sync_counter: Counter[str]) -> None:
    steps, every = 64, 16
    job = tiny_job(max_steps=steps, health_every=1)  # the worst case: every step
    t = make_trainer(tmp_path, job, flush_every=every, flush_seconds=1e9)
    assert t.run() == "finished"
    assert sync_counter == Counter({"tolist": steps // every})  # the losses' read only
    with RunReader(t.paths.root) as r:
        col = r.read_metrics().columns["update_ratio/1"]
    assert len(col) == steps and all(v > 0 for v in col)


def test_a_range_test_and_a_race_measure_nothing_and_health_goes_on(tmp_path: Path) -> None:
    """The sweep's and the race's steps (an optimizer swap among them) are not the run's:
    not measured, and the run's own steps are measured on their interval after them."""
    job = tiny_job("SGD", {"lr": 0.01, "momentum": 0.9}, max_steps=40, health_every=2)
    job.val_data = [job.train_data.dataset[:64]]  # type: ignore[attr-defined]
    trainer = make_trainer(tmp_path, job, flush_every=8)
    race = command("race", steps=4, val=False, candidates=["lr*2", "optimizer=Adam"])
    drive(trainer, 10, {4: [command("lr-find", num_iter=12)]})
    trainer._apply_commands(deque([race]))
    drive(trainer, 10)
    trainer.flush()
    trainer.recorder.close()
    with RunReader(trainer.paths.root) as r:
        cols = r.read_metrics()
    assert cols.length == 20
    ratio = list(cols.columns["update_ratio/0"])
    assert [not math.isnan(v) for v in ratio] == [s % 2 == 0 for s in range(20)]
    assert all(v > 0 for v in ratio[::2])


# -- own loops: the probe measures around the user's optimizer.step() -----------------------------
def test_probe_records_health_of_the_users_own_steps(
    tmp_path: Path, sync_counter: Counter[str]
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "name": "body"}, {"params": model[2].parameters()}],
        lr=0.05,
        momentum=0.9,
        weight_decay=1e-3,
    )
    x, y = torch.randn(32, 8), torch.randn(32, 1)
    probe = optitui.watch(opt, model=model, run_dir=tmp_path / "r", flush_every=8, health_every=3)
    want = []
    for _ in range(16):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        before, grads = _copies(opt), _grads(opt)
        opt.step()
        want.append(direct(before, grads, _copies(opt)))
        probe.step(opt.param_groups[0]["params"][0].sum() * 0)  # a loss tensor
    probe.close()
    assert sync_counter["tolist"] == 2  # 16 steps, two flushes: one read each
    assert not opt._optimizer_step_pre_hooks  # close took its hooks away
    with RunReader(tmp_path / "r") as r:
        cols = r.read_metrics().columns
    for s in range(16):
        for i in range(2):
            got = [cols[f"{series}/{i}"][s] for series in health_mod.SERIES]
            if s % 3 == 0:
                assert got == pytest.approx(list(want[s][i]), rel=1e-4)
            else:
                assert all(math.isnan(v) for v in got)


@pytest.mark.parametrize("fused", [True, False])
def test_steps_the_grad_scaler_skipped_are_not_measured(tmp_path: Path, fused: bool) -> None:
    """fp16 with the default scale: the first steps overflow and are skipped. A skipped
    step applied no update: its health is NaN (as its grad norm); the others are the
    unscaled gradient's norm (the same as the clip's) and a real update."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, fused=fused)
    scaler = torch.amp.GradScaler("cpu")
    x, y = torch.randn(32, 8), torch.randn(32, 1) * 30
    probe = optitui.watch(opt, model=model, run_dir=tmp_path / "r", flush_every=8, health_every=1)
    assert probe.trainer is not None
    probe.trainer.clip = 1e9  # records the true gradient norm, never clips
    for _ in range(24):
        with torch.autocast("cpu", dtype=torch.float16):
            loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        probe.step(loss)
    probe.close()
    with RunReader(tmp_path / "r") as r:
        cols = r.read_metrics().columns
    skipped = list(cols["skipped"])
    assert skipped[0] == 1.0 and 0 < sum(skipped) < 24
    for s, k in enumerate(skipped):
        gn, wn, ratio = (cols[f"{series}/0"][s] for series in health_mod.SERIES)
        if k:
            assert math.isnan(gn) and math.isnan(wn) and math.isnan(ratio)
        else:
            assert gn == pytest.approx(cols["grad_norm"][s], rel=1e-4)
            assert wn > 0 and ratio > 0


OWN_LOOP = """
import torch
from torch import nn
import optitui

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
opt = torch.optim.Adam(model.parameters(), lr=0.01)
probe = optitui.watch(opt, model=model)
x, y = torch.randn(64, 8), torch.randn(64, 1)
while not probe.should_stop:
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    probe.step(loss)
probe.close()
"""


def _run(tmp_path: Path, script: Path, name: str, *extra: str) -> list[float] | None:
    run_dir = tmp_path / name
    argv = [sys.executable, "-m", "optitui", "run", str(script), "--headless", "--quiet"]
    argv += ["--run-dir", str(run_dir), "--max-steps", "6", *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with RunReader(run_dir) as r:
        col = r.read_metrics().columns.get("update_ratio/0")
    return None if col is None else list(col)


def test_optitui_run_health_every_reaches_setup_jobs_and_own_loops(
    tmp_path: Path, tiny_script: Path
) -> None:
    """The option reaches a setup() Job (every 2 steps) and a probe (0: off)."""
    ratio = _run(tmp_path, tiny_script, "setup-2", "--health-every", "2")
    assert ratio is not None and [not math.isnan(v) for v in ratio] == [True, False] * 3
    own = write_script(tmp_path, OWN_LOOP, "own.py")
    assert _run(tmp_path, own, "own-0", "--health-every", "0") is None  # 16 without it
    bad = subprocess.run(
        [sys.executable, "-m", "optitui", "run", str(own), "--health-every", "-1"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--health-every" in bad.stderr


def test_the_dashboards_job_gets_health_every(tmp_path: Path) -> None:
    from optitui.launch import JobOptions, child_argv

    argv = child_argv(JobOptions(Path("t.py"), health_every=0), tmp_path)
    assert argv[argv.index("--health-every") + 1] == "0"
    assert "--health-every" not in child_argv(JobOptions(Path("t.py")), tmp_path)


# -- the copy limit: large models measure a sample of each group's tensors --------------
def _square_layers() -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    """Two groups of four 8x8 weights (256 bytes each, 2048 in all), Adam with decay; in
    each group the last two are 5x larger (their update ratio is smaller: a sample's
    ratio tells which tensors it took)."""
    torch.manual_seed(0)
    model = nn.Sequential(*(nn.Linear(8, 8, bias=False) for _ in range(8)))
    with torch.no_grad():
        for i, layer in enumerate(model):
            layer.weight.mul_(5.0 if i % 4 >= 2 else 1.0)  # type: ignore[operator]
    opt = torch.optim.AdamW(
        [
            {"params": list(model[:4].parameters())},
            {"params": list(model[4:].parameters()), "lr": 0.02},
        ],
        lr=0.05,
        weight_decay=0.1,
    )
    x, y = torch.randn(16, 8), torch.randn(16, 8)
    return model, opt, lambda: nn.functional.mse_loss(model(x), y)


def _ratio(w0: list[torch.Tensor], w1: list[torch.Tensor]) -> float:
    return float((_flat(w1) - _flat(w0)).norm() / _flat(w0).norm())


@pytest.mark.parametrize("hooked", [False, True], ids=["trainer", "hooks"])
def test_above_the_copy_limit_each_group_measures_its_tensors_in_turn(hooked: bool) -> None:
    """With room for half of the parameters, each group copies two of its four tensors a
    measurement, the next two at the next: its update ratio is theirs, its gradient and
    parameter norms the whole group's, and no measurement copies more than the limit."""
    _, opt, loss_fn = _square_layers()
    limit = 1024  # bytes: half the model
    h = Health(1, copy_gb=limit / 1e9)
    copied: list[int] = []
    clone = torch._foreach_clone

    def counted(ts: Any) -> Any:
        copied.append(sum(t.numel() * t.element_size() for t in ts))
        return clone(ts)

    for step in range(4):
        opt.zero_grad()
        loss_fn().backward()
        before, grads = _copies(opt), _grads(opt)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(torch, "_foreach_clone", counted)
            if hooked:
                h.arm(step, opt)
                opt.step()
            else:
                h.start(step, opt)
                opt.step()
        got = h.take()
        assert got is not None
        after = _copies(opt)
        half = slice(0, 2) if step % 2 == 0 else slice(2, 4)  # the tensors in turn
        want = direct(before, grads, after)
        for (g, w, d), wb, wa, (gn, wn, _) in zip(got.read(), before, after, want, strict=True):
            assert [g, w] == pytest.approx([gn, wn], rel=1e-5), step  # the whole group's
            assert d / w == pytest.approx(_ratio(wb[half], wa[half]), rel=1e-4), step
            assert d / w != pytest.approx(_ratio(wb, wa), rel=1e-3)  # not the whole's
    assert copied == [limit] * 4


def test_a_group_with_no_tensor_under_its_share_has_no_ratio_but_its_norms() -> None:
    """A group whose every tensor is larger than its share of the limit copies nothing:
    its update ratio is NaN (not a guess), its gradient and parameter norms exact; the
    other group, whose tensors fit, is measured."""
    torch.manual_seed(0)
    big, small = nn.Linear(32, 32, bias=False), nn.Linear(32, 2)  # 4096 B; 256 + 8 B
    opt = torch.optim.SGD(
        [{"params": big.parameters()}, {"params": small.parameters()}], lr=0.1, momentum=0.9
    )
    x = torch.randn(8, 32)
    h = Health(1, copy_gb=2000 / 1e9)  # shares: about 1880 and 120 bytes
    opt.zero_grad()
    small(big(x)).square().mean().backward()
    before, grads = _copies(opt), _grads(opt)
    h.start(0, opt)
    opt.step()
    got = h.take()
    assert got is not None
    (g0, w0, d0), (g1, w1, d1) = got.read()
    want = direct(before, grads, _copies(opt))
    assert math.isnan(d0) and [g0, w0] == pytest.approx(list(want[0][:2]), rel=1e-5)
    assert [g1, w1] == pytest.approx(list(want[1][:2]), rel=1e-5)
    assert d1 / w1 == pytest.approx(_ratio(before[1][1:], _copies(opt)[1][1:]), rel=1e-4)


def test_under_the_copy_limit_the_whole_model_is_copied(tmp_path: Path) -> None:
    """The Job's limit reaches the trainer's health; a model under it is measured whole
    (the ratio exact), as every test above the limit's checks."""
    job = tiny_job(max_steps=4, health_every=1, health_copy_gb=0.5)
    t = make_trainer(tmp_path, job)
    assert t.health.copy_limit == 0.5e9
    _, opt, loss_fn = _square_layers()
    h = Health(1, copy_gb=2048 / 1e9)  # room for all of it
    opt.zero_grad()
    loss_fn().backward()
    before, grads = _copies(opt), _grads(opt)
    h.start(0, opt)
    opt.step()
    got = h.take()
    assert got is not None
    for (g, w, d), want in zip(got.read(), direct(before, grads, _copies(opt)), strict=True):
        assert [g, w, d / w] == pytest.approx(list(want), rel=1e-4)


@pytest.mark.parametrize(
    "bad", [0, -1.0, math.nan, math.inf, pytest.param(10**400, id="10**400"), True, "1"]
)
def test_a_bad_copy_limit_is_refused_naming_it(bad: Any) -> None:
    with pytest.raises(JobError, match="health_copy_gb"):
        tiny_job(health_copy_gb=bad).validate()
    with pytest.raises(ValueError, match="health_copy_gb"):
        Health(16, copy_gb=bad)


@pytest.mark.parametrize(
    ("name", "wd", "fused"), CASES, ids=[f"{n}-wd{w}" + ("-fused" * f) for n, w, f in CASES]
)
def test_a_sampled_measurement_keeps_the_norms_exact_for_every_optimizer(
    name: str, wd: float, fused: bool
) -> None:
    """Above the copy limit (room for the smallest tensors only), every optimizer class's
    groups still get their exact gradient and parameter norms, and a ratio that is a
    sample's: positive, or NaN where nothing fitted."""
    _, opt, loss_fn = _setup(name, wd, fused)
    sizes = [p.numel() * p.element_size() for g in opt.param_groups for p in g["params"]]
    h = Health(1, copy_gb=(sum(sizes) - 1) / 1e9)  # just short of the whole
    for step in range(2):
        h.arm(step, opt)
        before, grads = _step(name, opt, loss_fn)
        got = h.take()
        assert got is not None
        want = direct(before, grads, _copies(opt))
        for (g, w, d), (gn, wn, _) in zip(got.read(), want, strict=True):
            assert [g, w] == pytest.approx([gn, wn], rel=1e-4, abs=1e-7), step
            assert math.isnan(d) or d / w > 0


def test_a_run_over_the_copy_limit_says_its_ratios_are_a_samples(tmp_path: Path) -> None:
    """The run's log says once, at the start, that the update ratios are from a sample
    (a jump between two measurements is then no surprise); under the limit it says
    nothing, nor with the health off."""
    said = {}
    for name, kw in (
        ("over", {"health_copy_gb": 1e-7}),  # 100 bytes: tiny_job is 700
        ("under", {}),
        ("off", {"health_copy_gb": 1e-7, "health_every": 0}),
    ):
        t = make_trainer(tmp_path, tiny_job(max_steps=4, **kw), name=name)
        assert t.run() == "finished"
        with RunReader(t.paths.root) as r:
            said[name] = [e.message for e in r.events() if "health_copy_gb" in e.message]
    assert len(said["over"]) == 1 and "share of its tensors" in said["over"][0]
    assert said["under"] == said["off"] == []


def test_own_loops_and_the_callbacks_take_a_copy_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``optitui.watch(..., health_copy_gb=)`` reaches the probe's health (a bad value
    is refused naming it, before anything is made), and the Lightning and HF callbacks
    hand theirs to the probe they make."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(JobError, match="health_copy_gb"):
        optitui.watch(opt, model=model, run_dir=tmp_path / "bad", health_copy_gb=-1)
    assert not (tmp_path / "bad").exists()
    probe = optitui.watch(opt, model=model, run_dir=tmp_path / "r", health_copy_gb=0.25)
    assert probe.trainer is not None and probe.trainer.health.copy_limit == 0.25e9
    probe.close()

    from optitui.integrations import lightning, transformers
    from optitui.trainer.probe import watch as watch_mod

    made: list[Any] = []
    monkeypatch.setattr(watch_mod, "Probe", lambda *a, **kw: made.append(kw))
    for cls in (lightning.OptituiCallback, transformers.OptituiCallback):
        cb = cls(tmp_path / "cb", health_copy_gb=3.0)
        cb.settings.make_probe(
            opt, model, None, mode="m", limits=(), meta={}, backend=None, first_step=0
        )
    assert [kw["health_copy_gb"] for kw in made] == [3.0, 3.0]
