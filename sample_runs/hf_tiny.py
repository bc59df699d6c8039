"""The Hugging Face Trainer with the optitui callback: a tiny GPT-2 built from a config.

    optitui run sample_runs/hf_tiny.py   # the dashboard on the Trainer
    python sample_runs/hf_tiny.py        # or plain python; then `optitui attach`

Nothing is downloaded: the model comes from a GPT2Config (2 layers, width 32)
and the data is generated here, counting sequences (each token is the one
before plus a fixed stride, modulo the vocabulary), so the loss has somewhere
to go. Needs the ``transformers`` extra (``pip install "optitui[transformers]"``).
The HF Trainer logs only the first group's lr; the dashboard shows both of
its groups (with and without weight decay).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from optitui.integrations.transformers import OptituiCallback

VOCAB, LENGTH = 64, 32


def counting_sequences(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB, (n, 1), generator=g)
    stride = torch.randint(1, 6, (n, 1), generator=g)
    ids = (start + stride * torch.arange(LENGTH)) % VOCAB
    return [{"input_ids": row, "labels": row} for row in ids]


def main() -> None:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=LENGTH, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    args = TrainingArguments(
        output_dir="runs/hf_tiny-checkpoints",
        max_steps=20_000,
        per_device_train_batch_size=32,
        learning_rate=3e-3,
        warmup_steps=200,
        lr_scheduler_type="cosine",
        weight_decay=0.01,
        logging_steps=500,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=GPT2LMHeadModel(config),
        args=args,
        train_dataset=counting_sequences(8192, 0),
        callbacks=[OptituiCallback()],
    )
    trainer.train()


if __name__ == "__main__":
    main()
