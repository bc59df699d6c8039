"""Your own training loop, two lines added: handwritten digits with an MLP.

    optitui run sample_runs/own_loop.py      # the dashboard, attached to this loop
    python sample_runs/own_loop.py           # or plain python; `optitui attach` from elsewhere

``probe = optitui.watch(...)`` serves the run store; ``probe.step(loss)`` after
each ``optimizer.step()`` is the step boundary where live edits apply, pause
waits and stop is noticed. Everything else is an ordinary PyTorch loop.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import optitui


def main() -> None:
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    perm = torch.randperm(len(x))
    train, val = perm[:1500], perm[1500:]
    data = DataLoader(TensorDataset(x[train], y[train]), batch_size=32, shuffle=True)

    body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 64))
    head = nn.Sequential(nn.ReLU(), nn.Linear(64, 10))
    model = nn.Sequential(body, head)
    optimizer = torch.optim.AdamW(
        [
            {"params": body.parameters(), "name": "body", "lr": 1e-3},
            {"params": head.parameters(), "name": "head", "lr": 3e-3},
        ],
        weight_decay=1e-2,
    )
    epochs = 200
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(data))

    probe = optitui.watch(optimizer, model=model, scheduler=scheduler)  # (1)
    for epoch in range(epochs):
        probe.epoch = epoch
        model.train()
        for xb, yb in data:
            loss = nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            probe.step(loss, samples=len(xb))  # (2) after optimizer.step(), before scheduler.step()
            scheduler.step()
            if probe.should_stop:
                break
        if probe.should_stop:
            break
        model.eval()
        with torch.no_grad():
            probe.val_loss(nn.functional.cross_entropy(model(x[val]), y[val]).item())
    probe.close()


if __name__ == "__main__":
    main()
