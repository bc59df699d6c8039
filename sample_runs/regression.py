"""A noisy 1-d regression on generated data, with a cosine schedule with warm restarts.

    optitui run sample_runs/regression.py

The lr plot shows the schedule; an lr edit keeps its shape (a multiplier).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import optitui


def make_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 4 * math.pi - 2 * math.pi
    y = torch.sin(x) + 0.3 * torch.sin(3 * x) + 0.05 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


def setup(device: torch.device) -> optitui.Job:
    model = nn.Sequential(
        nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=500, T_mult=2, eta_min=1e-5
    )
    return optitui.Job(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        train_data=DataLoader(make_data(4096, 0), batch_size=128, shuffle=True),
        val_data=DataLoader(make_data(1024, 1), batch_size=1024),
        val_every=200,
        loss_fn=nn.functional.mse_loss,
        seed=0,
    )
