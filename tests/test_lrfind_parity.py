"""Parity with the real torch-lr-finder package on a seeded model.

Configured like torch-lr-finder (uncorrected smoothing, skip 10 + 5, steepest gradient
against the index), our schedule, smoothing, stopping and steep rule reproduce its lrs,
its smoothed losses, where it stops, and the lr its ``plot(suggest_lr=True)`` suggests.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

torch = pytest.importorskip("torch")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")  # torch_lr_finder imports pyplot at import time
torch_lr_finder = pytest.importorskip("torch_lr_finder")

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from optitui.lrfind import Smoother, SweepConfig, factor, schedule, should_stop, smooth, steep  # noqa: E402

START, END, NUM = 1e-4, 10.0, 100


class RecordingMSE(nn.Module):
    """MSE that also records each raw loss: torch-lr-finder's history holds smoothed ones."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[float] = []

    def forward(self, out: Any, target: Any) -> Any:
        loss = nn.functional.mse_loss(out, target)
        self.raw.append(loss.item())
        return loss


@pytest.fixture(scope="module")
def finder_run() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    y = torch.sin(x @ torch.randn(8, 1, generator=g)) + 0.1 * torch.randn(512, 1, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    criterion = RecordingMSE()
    finder = torch_lr_finder.LRFinder(model, opt, criterion, device="cpu")
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    finder.range_test(
        loader,
        start_lr=START,
        end_lr=END,
        num_iter=NUM,
        step_mode="exp",
        smooth_f=0.05,
        diverge_th=5,
    )
    fig, ax = plt.subplots()
    try:
        _, suggested = finder.plot(skip_start=10, skip_end=5, ax=ax, suggest_lr=True)
    finally:
        plt.close(fig)
    return {
        "lrs": list(finder.history["lr"]),
        "losses": list(finder.history["loss"]),
        "raw": criterion.raw,
        "suggested": suggested,
    }


CONFIG = SweepConfig(
    start_lr=START, end_lr=END, num_iter=NUM, mode="exp", smooth_f=0.05, bias_correction=False
)


def test_the_run_is_a_real_diverging_curve(finder_run: dict[str, Any]) -> None:
    n = len(finder_run["lrs"])
    assert 10 + 5 + 20 < n < NUM  # long enough to suggest, and it stopped on divergence
    assert len(finder_run["raw"]) == n


def test_schedule_equals_its_lrs(finder_run: dict[str, Any]) -> None:
    lrs = finder_run["lrs"]
    assert schedule(CONFIG, base_lr=0.1)[: len(lrs)] == lrs


@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_schedule_equals_its_schedulers_for_every_group(mode: str) -> None:
    # Without start_lr each group sweeps from its own lr to end_lr (torch-lr-finder's way).
    params = [nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(
        [{"params": [params[0]], "lr": 1e-5}, {"params": [params[1]], "lr": 3e-3}]
    )
    cls = (
        torch_lr_finder.lr_finder.ExponentialLR
        if mode == "exp"
        else torch_lr_finder.lr_finder.LinearLR
    )
    sched = cls(opt, end_lr=2.0, num_iter=37)
    cfg = SweepConfig(end_lr=2.0, num_iter=37, mode=mode)  # type: ignore[arg-type]
    for it in range(37):
        assert [g["lr"] for g in opt.param_groups] == [factor(cfg, it, b) for b in (1e-5, 3e-3)]
        opt.step()
        sched.step()


def test_uncorrected_smoother_equals_its_history(finder_run: dict[str, Any]) -> None:
    assert smooth(finder_run["raw"], 0.05, bias_correction=False) == finder_run["losses"]


def test_stopping_rule_stops_where_it_does(finder_run: dict[str, Any]) -> None:
    smoother, best, stopped_at = Smoother(0.05, bias_correction=False), float("inf"), None
    for i, raw in enumerate(finder_run["raw"]):
        s = smoother.update(raw)
        best = min(best, s)
        if should_stop(s, best, CONFIG.diverge_th):
            stopped_at = i
            break
    assert stopped_at == len(finder_run["lrs"]) - 1


def test_steep_by_index_picks_its_suggestion(finder_run: dict[str, Any]) -> None:
    lrs, losses = finder_run["lrs"], finder_run["losses"]
    s = steep(lrs, losses, skip_start=10, skip_end=5, against="index")
    assert s.lr == finder_run["suggested"]
    # The same lines as its plot(): trim, then argmin of np.gradient.
    src = inspect.getsource(torch_lr_finder.LRFinder.plot)
    assert "lrs = lrs[skip_start:-skip_end]" in src
    assert "min_grad_idx = (np.gradient(np.array(losses))).argmin()" in src
    assert s.index is not None
    assert s.index - 10 == int(np.gradient(np.array(losses[10:-5])).argmin())
