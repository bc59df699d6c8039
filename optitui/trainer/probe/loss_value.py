"""The loss a loop hands ``probe.step()``, kept on the device it lives on."""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer


def loss_device(optimizer: Optimizer) -> torch.device:
    """Where a loss given as a number is put: the first parameter's device."""
    for g in optimizer.param_groups:
        for p in g["params"]:
            return torch.device(p.device)
    return torch.device("cpu")


def as_loss(loss: torch.Tensor | float | None, device: torch.device) -> torch.Tensor:
    """A 0-d tensor of ``loss`` (detached, never read back); NaN for None. A tensor that is
    not one number is a ValueError."""
    if isinstance(loss, torch.Tensor):
        d = loss.detach()
        if d.dim():
            if d.numel() != 1:
                raise ValueError(f"probe.step: the loss must be a scalar, got {tuple(d.shape)}")
            d = d.reshape(())
        return d
    return torch.tensor(math.nan if loss is None else float(loss), device=device)
