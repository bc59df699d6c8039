"""Tiny, seeded jobs built in-process (no script file) for trainer tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from optitui.store.layout import create_run_dir
from optitui.trainer.core.job import Job
from optitui.trainer.loop.trainer import Trainer


def regression_data(n: int = 256, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


def tiny_job(
    optimizer: str = "SGD",
    opt_kwargs: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    batch_size: int = 32,
    **job_kwargs: Any,
) -> Job:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    cls = getattr(torch.optim, optimizer)
    kwargs = {"lr": 0.01} | (opt_kwargs or {})
    opt = cls(
        [
            {"params": model[0].parameters(), "name": "body"},
            {"params": model[2].parameters(), "name": "head"},
        ],
        **kwargs,
    )
    g = torch.Generator().manual_seed(seed)
    data = DataLoader(regression_data(), batch_size=batch_size, shuffle=True, generator=g)
    return Job(
        model=model, optimizer=opt, train_data=data, loss_fn=nn.functional.mse_loss, **job_kwargs
    )


def make_trainer(tmp_path: Path, job: Job, name: str = "run", **kwargs: Any) -> Trainer:
    paths = create_run_dir(tmp_path, name, tmp_path / name)
    return Trainer(job, torch.device("cpu"), paths, **kwargs)


def command(kind: str, **args: Any) -> Any:
    """A checked command, as the job would receive it from the inbox."""
    from optitui.store.commands import Command, validate

    return Command(f"test-{kind}", kind, validate(kind, args), "{}")


def drive(
    trainer: Trainer, steps: int, at: dict[int, list[Any]] | None = None
) -> list[list[float]]:
    """Run ``steps`` optimizer steps the way ``Trainer.run`` does, applying the commands
    in ``at[s]`` at the boundary after step s. Returns each step's lr per group."""
    from optitui.trainer.control import commands as control
    from optitui.trainer.core.lr import read_lr

    at = at or {}
    lrs: list[list[float]] = []
    if trainer.state == "starting":
        trainer._start()
    for _ in range(steps):
        if trainer._ramps:
            trainer._advance_ramps()
        for cmd in at.get(trainer.step, []):
            control.apply(trainer, cmd)
        if trainer.pending_test is not None:
            trainer.run_range_test(trainer.pending_test)
        lrs.append([read_lr(g) for g in trainer.optimizer.param_groups])
        trainer._train_step()
        trainer.step += 1
    return lrs
