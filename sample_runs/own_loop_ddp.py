"""Your own DistributedDataParallel loop, two lines added: digits on several processes.

    optitui run sample_runs/own_loop_ddp.py --nproc-per-node 2     # dashboard attached
    torchrun --nproc-per-node 2 sample_runs/own_loop_ddp.py         # or torchrun itself

Every rank calls ``optitui.watch``: rank 0 writes the run store, and every
``sync_every`` steps the ranks meet inside ``probe.step`` to average their
losses and take rank 0's commands, so a live edit lands on every rank at the
same step. Uses gloo on the CPU and NCCL with one GPU per rank.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

import optitui


def main() -> None:
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)  # the same initial weights on every rank
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    perm = torch.randperm(len(x))
    train, val = perm[:1500], perm[1500:]
    dataset = TensorDataset(x[train], y[train])
    sampler = DistributedSampler(dataset, shuffle=True, seed=0)  # each rank its own shard
    data = DataLoader(dataset, batch_size=32, sampler=sampler)

    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
    model = DDP(net.to(device), device_ids=[local] if cuda else None)
    optimizer = torch.optim.AdamW(
        [
            {"params": net[0].parameters(), "name": "body", "lr": 1e-3},
            {"params": net[3].parameters(), "name": "head", "lr": 3e-3},
        ],
        weight_decay=1e-2,
    )
    epochs = 200
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(data))

    probe = optitui.watch(optimizer, model=model, scheduler=scheduler)  # (1) on every rank
    for epoch in range(epochs):
        probe.epoch = epoch
        sampler.set_epoch(epoch)
        model.train()
        for xb, yb in data:
            xb, yb = xb.to(device), yb.to(device)
            loss = nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            probe.step(loss, samples=len(xb))  # (2) the step boundary, on every rank
            scheduler.step()
            if probe.should_stop:  # agreed by the ranks: they all leave at the same step
                break
        if probe.should_stop:
            break
        if dist.get_rank() == 0:
            model.eval()
            with torch.no_grad():
                out = net(x[val].to(device))
                probe.val_loss(nn.functional.cross_entropy(out, y[val].to(device)).item())
    probe.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
