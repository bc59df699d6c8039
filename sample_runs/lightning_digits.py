"""Lightning with the optitui callback: handwritten digits, two param groups, OneCycle.

    optitui run sample_runs/lightning_digits.py   # the dashboard on the fit
    python sample_runs/lightning_digits.py        # or plain python; then `optitui attach`

Needs the ``lightning`` extra (``pip install "optitui[lightning]"``) and the
``samples`` extra for the data. Lightning steps its scheduler; live lr edits
ride on top as a multiplier. Saving from the dashboard writes a Lightning
checkpoint into the run directory.
"""

from __future__ import annotations

from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

try:
    import lightning.pytorch as pl
except ImportError:
    import pytorch_lightning as pl  # type: ignore[no-redef]

from optitui.integrations.lightning import OptituiCallback

EPOCHS = 150


class Digits(pl.LightningModule):
    def __init__(self, steps_per_epoch: int) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(
            [
                {"params": self.body.parameters(), "name": "body"},
                {"params": self.head.parameters(), "name": "head"},
            ],
            lr=0.05,
            momentum=0.9,
        )
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=[0.1, 0.05],
            total_steps=EPOCHS * self.hparams["steps_per_epoch"],
            cycle_momentum=False,
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def main() -> None:
    pl.seed_everything(0)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    perm = torch.randperm(len(x))
    train = DataLoader(TensorDataset(x[perm[:1500]], y[perm[:1500]]), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(x[perm[1500:]], y[perm[1500:]]), batch_size=512)
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        callbacks=[OptituiCallback()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        check_val_every_n_epoch=5,
    )
    trainer.fit(Digits(len(train)), train, val)


if __name__ == "__main__":
    main()
