"""Zero-code mode: an unmodified PyTorch script under ``optitui run`` shows its loss and
every group's lr and takes live edits; and the pieces that make it work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, wait_for, write_script
from jobs import command
from torch import nn

import optitui
from optitui.store.client import send
from optitui.store.layout import RunPaths
from optitui.store.reader import RunReader
from optitui.trainer.entry.script_mode import (
    NO_MODEL,
    LossTap,
    ZeroCode,
    defines_setup,
    find_model,
)
from optitui.trainer.probe.watch import StopTraining

OPTITUI_RUN = (sys.executable, "-m", "optitui", "run")
PLAIN = """
import sys
import torch
from torch import nn


def main():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[3].parameters(), "lr": 0.01}],
        lr=0.05,
        momentum=0.9,
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=STEP_SIZE, gamma=0.5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(512, 8, generator=g)
    y = x.sum(1, keepdim=True)
    for step in range(STEPS):
        i = (step * 32) % 512
        loss = nn.functional.mse_loss(model(x[i : i + 32]), y[i : i + 32])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        print(f"loss {loss.item():.9g}", flush=True)
    print("the script's own end")


if __name__ == "__main__":
    main()
"""


def run(script: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPTITUI_RUN, str(script), "--headless", "--run-dir", str(run_dir), *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_an_unmodified_script_records_loss_and_every_lr(tmp_path: Path) -> None:
    script = write_script(tmp_path, PLAIN.replace("STEPS", "30").replace("STEP_SIZE", "10"))
    out = run(script, tmp_path / "run")
    assert out.returncode == 0, out.stderr
    assert "the script's own end" in out.stdout
    printed = [float(line.split()[1]) for line in out.stdout.splitlines() if line[:4] == "loss"]
    with RunReader(tmp_path / "run") as r:
        st = r.status()
        assert (st.state, st.step) == ("finished", 30)
        cols = r.read_metrics()
        assert list(cols.columns["loss"]) == pytest.approx(printed, rel=1e-6)
        # every group, StepLR (found by itself) halving both every 10 steps
        assert list(cols.columns["lr/0"]) == pytest.approx(
            [0.05] * 10 + [0.025] * 10 + [0.0125] * 10
        )
        assert list(cols.columns["lr/1"]) == pytest.approx(
            [0.01] * 10 + [0.005] * 10 + [0.0025] * 10
        )
        meta = r.meta()
        assert meta["probe"]["mode"] == "zero-code" and meta["probe"]["limits"]
        assert NO_MODEL not in meta["probe"]["limits"]  # the model in main() was found
        assert meta["scheduler"] == "StepLR"


def test_an_unmodified_script_takes_live_edits_and_stops(tmp_path: Path) -> None:
    script = write_script(tmp_path, PLAIN.replace("STEPS", "10**9").replace("STEP_SIZE", "200"))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [*OPTITUI_RUN, str(script), "--headless", "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        wait_for(lambda: RunPaths(run_dir).exists(), 60, "the store")
        reader = RunReader(run_dir)
        wait_for(lambda: reader.status().step > 20, 60, "steps")
        out = send(RunPaths(run_dir), "set", {"values": {"lr": 0.02}, "group": 1}).outcome
        assert out is not None and out.applied, out
        done = send(RunPaths(run_dir), "scale-lr", {"factor": 0.5}).outcome
        assert done is not None and done.applied
        wait_for(lambda: reader.status().step > done.step + 210, 60, "steps after the edits")
        assert send(RunPaths(run_dir), "stop").outcome.applied  # type: ignore[union-attr]
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    st = reader.status()
    assert (st.state, st.message) == ("stopped", "stop command")
    cols = reader.read_metrics()
    lr0, lr1 = list(cols.columns["lr/0"]), list(cols.columns["lr/1"])
    assert cols.length == st.step
    s, t, u = out.step, done.step, done.step + 205

    def f(i: int) -> float:  # StepLR's own factor at step index i
        return 0.5 ** (i // 200)

    assert lr1[s - 1] == pytest.approx(0.01 * f(s - 1)) and lr1[s] == pytest.approx(0.02)
    assert lr0[s] == pytest.approx(0.05 * f(s))  # the other group untouched
    assert lr0[t] == pytest.approx(0.05 * f(t) * 0.5)
    assert lr1[t] == pytest.approx(0.02 * f(t) / f(s) * 0.5)
    assert f(u) < f(t)  # StepLR went on halving on top of the edits
    assert lr0[u] == pytest.approx(0.05 * f(u) * 0.5)
    assert lr1[u] == pytest.approx(0.02 * f(u) / f(s) * 0.5)


def model_and_opt() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.1), nn.Linear(8, 1))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def test_the_loss_is_summed_over_accumulation(zero: ZeroCode, tmp_path: Path) -> None:
    model, opt = model_and_opt()
    x = torch.randn(4, 32, 4)
    for _ in range(3):
        total = 0.0
        for k in range(4):  # four micro-batches per optimizer step
            loss = model(x[k]).pow(2).mean() / 4
            loss.backward()
            total += loss.item()
        opt.step()
        opt.zero_grad()
    assert zero.probe is not None and zero.probe.trainer is not None
    assert zero.probe.trainer.model is model
    zero.probe.close()
    with RunReader(tmp_path / "zc") as r:
        cols = r.read_metrics()
        assert cols.length == 3 and cols.columns["loss"][-1] == pytest.approx(total, rel=1e-6)


def test_stop_raises_out_of_the_step_and_a_range_test_restores(
    zero: ZeroCode, tmp_path: Path
) -> None:
    model, opt = model_and_opt()
    x = torch.randn(32, 4)

    def step() -> None:
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()

    step()
    probe = zero.probe
    assert probe is not None and probe.trainer is not None
    before = [p.detach().clone() for p in model.parameters()]
    probe.trainer.commands.append(command("lr-find", num_iter=8))
    step()  # applied at this step's boundary; its state is what the test restores
    before = [p.detach().clone() for p in model.parameters()]
    while probe.state == "lr-find":
        step()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert probe.trainer.range_tests["test-lr-find"].status == "done"
    probe.trainer.commands.append(command("stop"))
    with pytest.raises(StopTraining):
        step()
    probe.close()
    with RunReader(tmp_path / "zc") as r:
        assert r.status().state == "stopped" and r.read_metrics().length == 3


def test_zero_code_steps_aside_for_watch(zero: ZeroCode, tmp_path: Path) -> None:
    model, opt = model_and_opt()
    x = torch.randn(32, 4)
    probe = optitui.watch(opt, model=model)
    assert zero.aside and zero.probe is None
    for _ in range(5):
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        probe.step(loss)
    assert probe.steps == 5  # the global hooks are gone: no double steps
    probe.close()
    with RunReader(tmp_path / "zc") as r:
        assert r.meta()["probe"]["mode"] == "watch"


def test_only_the_first_optimizer_is_watched(zero: ZeroCode) -> None:
    gen, disc = nn.Linear(4, 4), nn.Linear(4, 1)
    g_opt = torch.optim.SGD(gen.parameters(), lr=0.1)
    d_opt = torch.optim.SGD(disc.parameters(), lr=0.2)
    z = torch.randn(8, 4)
    seen = []
    for _ in range(3):
        d_loss = disc(gen(z).detach()).mean()
        seen.append(d_loss.item())
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        g_loss = -disc(gen(z)).mean()
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
    p = zero.probe
    assert p is not None and p.optimizer is d_opt and p.steps == 3
    assert p.trainer is not None
    # the first optimizer stepped is watched, with its own loss (not the generator's)
    assert torch.stack([r[0] for r in p.trainer._rows]).tolist() == pytest.approx(seen, rel=1e-6)


def test_find_model_takes_the_tightest_holder() -> None:
    inner = nn.Linear(4, 4)
    outer = nn.Sequential(inner, nn.Linear(4, 1))
    opt = torch.optim.SGD(inner.parameters(), lr=0.1)
    assert find_model(opt) is inner
    assert find_model(torch.optim.SGD(outer.parameters(), lr=0.1)) is outer
    lone = torch.zeros(2, requires_grad=True)
    assert find_model(torch.optim.SGD([lone], lr=0.1)) is None


def test_loss_tap_takes_scalar_backward_only() -> None:
    tap = LossTap()
    tap.start()
    try:
        w = torch.ones(3, requires_grad=True)
        (w * 2).sum().backward()  # type: ignore[no-untyped-call]
        (w * 3).backward(torch.ones(3))  # type: ignore[no-untyped-call]  # not a scalar
        torch.autograd.backward([(w * 4).sum()])
        taken = tap.take()
        assert taken is not None and taken.item() == 18.0 and tap.take() is None
    finally:
        tap.stop()
    assert torch.autograd.backward.__name__ == "backward"


@pytest.mark.parametrize(
    ("body", "has"),
    [
        ("def setup(device):\n    pass\n", True),
        ("if True:\n    def setup(device):\n        pass\n", True),
        ("from jobs import tiny_job as setup\n", True),
        ("setup = None\n", True),
        ("def main():\n    def setup(device):\n        pass\n", False),
        ("class A:\n    def setup(self):\n        pass\n", False),
        ("import torch\nprint('train')\n", False),
        ("def broken(:\n", True),  # the usual path reports the syntax error
    ],
)
def test_defines_setup_without_running_the_script(tmp_path: Path, body: str, has: bool) -> None:
    assert defines_setup(write_script(tmp_path, body)) is has
