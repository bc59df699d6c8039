"""A converged run: its loss is small and noisy (heavy-tailed, as a digits classifier's at
5e-4). The range test runs until the loss really blows up and suggests an lr; the spike
warning comes once per real spike, not every flush."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from conftest import wait_for
from jobs import make_trainer, tiny_job
from torch import nn

from optitui.store.client import send
from optitui.store.reader import RunReader

BLOWS_UP_AT = 0.3  # the lr past which the synthetic loss explodes
TRAIN_LR = 0.01


def noise(key: float) -> float:
    """A converged run's heavy-tailed loss noise, 5e-4 times a lognormal (losses from
    about 1e-5 to 1e-2), the same for the same key whatever ran before."""
    g = torch.Generator().manual_seed(int(key * 1e12) % (2**62) + SEED)
    return 5e-4 * math.exp(1.4 * float(torch.randn((), generator=g)))


SEED = 7  # with it torch-lr-finder's rule stops the sweep after 11 of 100 iterations


def converged(job: Any, spike_from: int | None = None) -> Any:
    """A step_fn whose loss is the model's (so gradients are real) scaled to nothing, plus
    the noise (keyed by the lr during a range test, so its sweep sees the same losses
    whenever it starts, and by the step otherwise), and a loss that explodes once the lr
    passes BLOWS_UP_AT (the range test's end)."""
    calls = [0]

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        calls[0] += 1
        x, y = batch
        real = nn.functional.mse_loss(model(x), y) * 1e-9
        lr = job.optimizer.param_groups[0]["lr"]
        noise_now = noise(lr if lr != TRAIN_LR else calls[0] / 1e6)
        blow = 50.0 * max(0.0, lr - BLOWS_UP_AT) ** 2
        jump = 0.05 if spike_from is not None and calls[0] >= spike_from else 0.0
        return real + noise_now + blow + jump

    return step_fn


def test_the_range_test_on_a_converged_run_runs_until_the_loss_blows_up(
    tmp_path: Path, run_in_thread: Any
) -> None:
    job = tiny_job("SGD", {"lr": TRAIN_LR})
    job.loss_fn, job.step_fn = None, converged(job)
    t = make_trainer(tmp_path, job)
    run_in_thread(t)
    reader = RunReader(t.paths.root)
    wait_for(lambda: reader.status().step > 20, what="steps")
    out = send(t.paths, "lr-find", {"num_iter": 100}).outcome
    assert out is not None and out.applied
    wait_for(lambda: [x for x in reader.range_tests() if x.status != "running"], what="its end")
    (test,) = reader.range_tests()
    assert test.status == "done", test.message
    stopped = len(test.lrs)
    assert test.lrs[stopped - 1] > BLOWS_UP_AT  # it went on to where the loss blows up
    assert stopped > 60, (stopped, test.message)
    suggestions = {s["rule"]: s for s in test.suggestions}
    assert any(s["lr"] is not None for s in suggestions.values())
    # a suggestion past the point where the loss starts to blow up is not trusted
    for s in test.suggestions:
        if s["lr"] is not None and s["lr"] > BLOWS_UP_AT * 1.5:
            assert "blow up" in s["note"], s


def test_a_converged_run_gives_no_spike_warnings_and_a_real_spike_gives_one(
    tmp_path: Path,
) -> None:
    job = tiny_job("SGD", {"lr": TRAIN_LR}, max_steps=3000)
    job.loss_fn, job.step_fn = None, converged(job, spike_from=2500)
    t = make_trainer(tmp_path, job, flush_every=64, flush_seconds=1e9)
    assert t.run() == "finished"
    with RunReader(t.paths.root) as r:
        spikes = [e for e in r.events() if e.data and e.data.get("marker") == "spike"]
    assert len(spikes) == 1, [e.message for e in spikes]
    assert 2500 <= spikes[0].step <= 2510 and "loss spike at step" in spikes[0].message
