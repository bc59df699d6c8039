"""Tiny Lightning and HF Trainer set-ups shared by the integration tests (no downloads)."""

from __future__ import annotations

import os
from typing import Any

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_gpt2(layers: int = 1, width: int = 16, vocab: int = 32, positions: int = 16) -> Any:
    """A GPT-2 built from a config: two param groups under the HF Trainer (decay or not)."""
    import transformers

    cfg = transformers.GPT2Config(
        n_layer=layers, n_embd=width, n_head=2, vocab_size=vocab, n_positions=positions,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg)


def token_rows(n: int = 64, length: int = 8, vocab: int = 32) -> list[dict[str, torch.Tensor]]:
    """Language-model rows whose labels are their inputs."""
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(0, vocab, (length,), generator=g) for _ in range(n)]
    return [{"input_ids": r, "labels": r} for r in rows]


def quiet_lightning(callbacks: list[Any], **kwargs: Any) -> Any:
    """A CPU Lightning Trainer that writes and prints nothing of its own."""
    import lightning.pytorch as pl

    return pl.Trainer(
        callbacks=callbacks,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )
