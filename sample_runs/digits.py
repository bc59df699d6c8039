"""Handwritten digits (8x8, bundled with scikit-learn): an MLP with two param groups.

    optitui run sample_runs/digits.py

The body and the head get separate param groups (named, with their own lr),
so per-group edits show in the dashboard. Validation every 100 steps.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import optitui


def setup(device: torch.device) -> optitui.Job:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    train, val = perm[:1500], perm[1500:]

    body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
    head = nn.Linear(64, 10)
    model = nn.Sequential(body, head).to(device)
    optimizer = torch.optim.SGD(
        [
            {"params": body.parameters(), "name": "body", "lr": 0.05},
            {"params": head.parameters(), "name": "head", "lr": 0.02},
        ],
        momentum=0.9,
        weight_decay=1e-4,
    )
    return optitui.Job(
        model=model,
        optimizer=optimizer,
        train_data=DataLoader(
            TensorDataset(x[train], y[train]), batch_size=64, shuffle=True, generator=g
        ),
        val_data=DataLoader(TensorDataset(x[val], y[val]), batch_size=512),
        val_every=100,
        loss_fn=nn.functional.cross_entropy,
    )
