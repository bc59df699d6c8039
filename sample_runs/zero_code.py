"""An unmodified PyTorch script: a two-spiral classifier, no optitui import at all.

    optitui run sample_runs/zero_code.py

optitui runs it as it is (zero-code mode): the optimizer is found through
torch's optimizer hooks, the loss is the scalar backward() is called on, and
the scheduler and model are picked up where the script made them. The loss and
lr plots and live edits work; the dashboard lists what needs optitui.watch().
"""

import math

import torch
from torch import nn


def spirals(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g) * 3 * math.pi + 0.5
    arm = torch.randint(0, 2, (n,), generator=g)
    sign = 1 - 2 * arm.float()
    pts = torch.stack([t * torch.cos(t) * sign, t * torch.sin(t) * sign], 1) / 10
    return pts + 0.08 * torch.randn(n, 2, generator=g), arm


def main() -> None:
    torch.manual_seed(0)
    x, y = spirals(4096, 0)
    model = nn.Sequential(
        nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10_000, gamma=0.5)
    for step in range(60_000):
        idx = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 2000 == 0:
            acc = (model(x).argmax(1) == y).float().mean().item()
            print(f"step {step}: loss {loss.item():.4f}, accuracy {acc:.3f}", flush=True)


if __name__ == "__main__":
    main()
