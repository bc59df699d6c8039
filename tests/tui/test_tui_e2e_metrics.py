"""End to end in a real terminal (tmux): a live job that returns its own metrics from
step_fn; `optitui attach --pin val_close` draws one under the loss plot, m opens the
metrics screen, / filters it, Enter opens a chart full size, Esc goes back."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import pytest
from test_tui_e2e import Tmux, braille, tmux, wait_for

from optitui.launch import JobOptions, start_job

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]
__all__ = ["tmux"]  # the fixture, shared with test_tui_e2e

METRICS_JOB = """
import torch
from torch import nn
import optitui


def setup(device):
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x.sum(1, keepdim=True)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = [(x[i : i + 32].to(device), y[i : i + 32].to(device)) for i in range(0, 256, 32)]

    def step_fn(model, batch):
        xb, yb = batch
        out = model(xb)
        close = ((out - yb).abs() < 0.5).float().mean()
        return {"loss": nn.functional.mse_loss(out, yb), "close": close, "[bold]odd": close * 0}

    return optitui.Job(model=model, optimizer=opt, train_data=batches, step_fn=step_fn,
                       val_data=batches[:2], val_every=20)
"""


def test_metrics_screen_on_a_live_job(tmux: Tmux, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    script = tmp_path / "metrics_job.py"
    script.write_text(METRICS_JOB)
    live = start_job(JobOptions(script, device="cpu", root=root), timeout=60)
    py = shlex.quote(sys.executable)
    run = live.paths.root.name
    cmd = f"{py} -m optitui attach --root {shlex.quote(str(root))} --pin val_close {run}"
    tmux.start("m", cmd, size=(120, 36))

    def show() -> str:
        return tmux.screen("m")

    # the pinned metric under the loss plot, with its values
    wait_for(
        lambda: " val_close " in show() and braille(show()) > 150, 60, "val_close pinned", show
    )
    tmux.keys("m", "m")
    screen = wait_for(
        lambda: "Metrics" in show() and "close" in show() and "── validation" in show() and show(),
        30,
        "the metrics screen",
        show,
    )
    assert "[bold]odd" in screen  # the name as written, never read as markup
    assert "grad_norm" in screen or "optimizer health" in screen
    tmux.keys("m", "/val_c")  # typed at once: every key after / is the filter's
    wait_for(lambda: "1 of" in show() and "val_close" in show(), 10, "the filter", show)
    assert " close " not in show()  # the per-step one is filtered out
    tmux.keys("m", "Enter")  # leaves the filter: the charts' keys are back in the footer
    wait_for(lambda: "pin under loss" in show(), 10, "the grid's focus", show)
    tmux.keys("m", "Enter")  # opens the chart
    # its own head (the name, the steps in view) and keys (zoom, pan)
    wait_for(lambda: show().startswith(" val_close") and "zoom" in show(), 10, "full size", show)
    tmux.keys("m", "l")
    wait_for(lambda: "log-y" in show().splitlines()[1], 10, "log-y", show)
    tmux.keys("m", "Escape")
    wait_for(lambda: "Metrics" in show().splitlines()[0], 10, "back to the grid", show)
    tmux.keys("m", "Escape")
    wait_for(lambda: "loss ·" in show() and " val_close " in show(), 10, "the dashboard", show)
