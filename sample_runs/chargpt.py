"""A small character-level transformer trained on Python's own standard library.

    optitui run sample_runs/chargpt.py

The model computes its own loss from dict batches, so the Job uses step_fn.
The text is read from the running interpreter's stdlib sources: it exists on
every machine and needs no download.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F

import optitui

BLOCK = 64


def corpus(limit: int = 1_500_000) -> str:
    root = os.path.dirname(os.__file__)
    parts: list[str] = []
    size = 0
    for name in sorted(os.listdir(root)):
        if name.endswith(".py"):
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
                text = f.read()
            parts.append(text)
            size += len(text)
            if size >= limit:
                break
    return "".join(parts)


class CharGPT(nn.Module):
    def __init__(self, vocab: int, dim: int = 96, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(BLOCK, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab)
        mask = torch.triu(torch.full((BLOCK, BLOCK), float("-inf")), diagonal=1)
        self.register_buffer("mask", mask)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        h = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        logits = self.out(self.norm(h))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class Batches:
    """Random windows of the text, as dict batches; one 'epoch' is `per_epoch` batches."""

    def __init__(self, data: torch.Tensor, batch: int, per_epoch: int, seed: int) -> None:
        self.data, self.batch, self.per_epoch = data, batch, per_epoch
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for _ in range(self.per_epoch):
            i = torch.randint(len(self.data) - BLOCK - 1, (self.batch,), generator=self.gen)
            x = torch.stack([self.data[j : j + BLOCK] for j in i.tolist()])
            y = torch.stack([self.data[j + 1 : j + 1 + BLOCK] for j in i.tolist()])
            yield {"idx": x, "targets": y}


def step_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    loss: torch.Tensor = model(batch["idx"], batch["targets"])
    return loss


def setup(device: torch.device) -> optitui.Job:
    text = corpus()
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([lookup[c] for c in text], dtype=torch.long)
    split = int(0.95 * len(data))
    model = CharGPT(len(chars)).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "name": "weights", "weight_decay": 0.1},
            {"params": no_decay, "name": "norms+biases", "weight_decay": 0.0},
        ],
        lr=2e-3,
        betas=(0.9, 0.95),
    )
    return optitui.Job(
        model=model,
        optimizer=optimizer,
        train_data=Batches(data[:split], batch=32, per_epoch=500, seed=0),
        val_data=Batches(data[split:], batch=64, per_epoch=4, seed=1),
        val_every=100,
        step_fn=step_fn,
        clip_grad_norm=1.0,
        seed=0,
    )
