"""Mixed precision on the CPU: bf16 losses, GradScaler("cpu") and fused SGD.

The CPU has the same autocast and GradScaler code paths as CUDA (fused SGD and
Adam take the scaler's ``grad_scale`` and ``found_inf`` on the CPU too), so
what the trainer and the probes record under AMP is checked here.
"""

from __future__ import annotations

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
