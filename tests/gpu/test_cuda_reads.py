"""On a CUDA machine: 1,000 steps with their flushes and not one blocking host-device sync.

Skipped without CUDA. Each flush copies its values (losses, grad norms, the step's own
metrics, the optimizer health) to pinned host memory without blocking and reads the
previous flush's copy, whose event has passed by then; the divergence guard acts on
that. ``set_sync_debug_mode("error")`` raises at any synchronizing operation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda", 0)


def step_fn(model: nn.Module, batch: Any) -> dict[str, Any]:
    x, y = batch
    out = model(x)
    loss = nn.functional.mse_loss(out, y)
    return {"loss": loss, "mean": out.detach().mean(), "max": out.detach().max(), "half": 0.5}


def test_a_thousand_steps_and_their_flushes_make_no_blocking_sync(tmp_path: Path) -> None:
    from optitui.store.layout import create_run_dir
    from optitui.store.reader import RunReader
    from optitui.trainer.core.job import Job
    from optitui.trainer.loop.trainer import Trainer

    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 32, generator=g)
    y = x @ torch.randn(32, 1, generator=g)
    batches = [(x[i : i + 64].to(CUDA), y[i : i + 64].to(CUDA)) for i in range(0, 512, 64)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 1)).to(CUDA)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    job = Job(model=model, optimizer=opt, train_data=batches, step_fn=step_fn, clip_grad_norm=1.0)
    paths = create_run_dir(tmp_path, "run", tmp_path / "run")
    t = Trainer(job, CUDA, paths, flush_every=64, flush_seconds=1e9)
    assert t.reads is not None  # CUDA reads one flush later
    t._start()

    def steps(n: int) -> None:
        for _ in range(n):
            t._take_commands()
            t._train_step()
            t._after_step()

    steps(128)  # the first checks of a new run (the loss's shape) and pinned buffers
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        steps(1000)  # every 64th step flushes: 15 copies started, 15 read
    finally:
        torch.cuda.set_sync_debug_mode("default")
    t.request_stop("done")
    t._finish("stopped", None)
    with RunReader(paths.root) as r:
        cols = r.read_metrics().columns
        assert list(cols["step"]) == [float(s) for s in range(1, 1129)]
        for name in ("loss", "grad_norm", "user:mean", "user:max", "user:half"):
            assert all(math.isfinite(v) for v in cols[name]), name
