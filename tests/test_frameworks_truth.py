"""The frameworks' own numbers agree with optitui's: the HF Trainer's logged lr after an
edit, and the validation losses Lightning and HF compute are recorded."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import wait_for
from frameworks import quiet_lightning, tiny_gpt2, token_rows
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from optitui.store.client import send
from optitui.store.layout import RunPaths
from optitui.store.reader import RunReader

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_hf_logs_the_applied_lr_and_its_eval_loss_is_recorded(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from optitui.integrations.transformers import OptituiCallback

    model = tiny_gpt2()
    data = token_rows()
    gate = threading.Event()

    class Gate(transformers.TrainerCallback):  # type: ignore[misc,name-defined]
        """Holds the run at step 6 until the edit has been answered."""

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == 6:
                gate.wait(30)

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=16,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        warmup_steps=4,
        lr_scheduler_type="linear",
        logging_strategy="steps",
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=5,
        per_device_eval_batch_size=8,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    cb = OptituiCallback(tmp_path / "run", flush_every=2)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=data, eval_dataset=data[:16], callbacks=[Gate(), cb]
    )
    fit = threading.Thread(target=trainer.train)
    fit.start()
    paths = RunPaths(tmp_path / "run")
    try:
        wait_for(lambda: cb.probe is not None and cb.probe.steps >= 6, 60, "step 6")
        out = send(paths, "scale-lr", {"factor": 3.0}).outcome
        assert out is not None and out.applied
        gate.set()
        fit.join(120)
    finally:
        gate.set()
        fit.join(120)
    assert not fit.is_alive()
    with RunReader(paths.root) as r:
        lrs = list(r.read_metrics().columns["lr/0"])
        vals = [(step, loss) for _, step, _, loss in r.val()]
    logged = {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "loss" in e}
    # the Trainer logs get_last_lr() right after step k's optimizer step: the lr step k
    # used, as recorded (row k - 1), three times the schedule's after the edit
    s = out.step
    for k in range(1, 17):
        assert logged[k] == pytest.approx(lrs[k - 1], rel=1e-9), k
    # the linear schedule's lr for step s + 1 (warmup 4 of 16 steps), tripled
    assert logged[s + 1] == pytest.approx(3 * 1e-3 * (16 - s) / (16 - 4), rel=1e-9)
    evals = [(e["step"], e["eval_loss"]) for e in trainer.state.log_history if "eval_loss" in e]
    assert [s for s, _ in evals][:3] == [5, 10, 15]  # (and at the end, in this version)
    assert vals == [(s, pytest.approx(v)) for s, v in evals]


def test_lightning_records_the_logged_validation_loss(tmp_path: Path) -> None:
    pl = pytest.importorskip("lightning.pytorch")
    from optitui.integrations.lightning import OptituiCallback

    seen: list[float] = []

    class Module(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(8, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

        def on_validation_epoch_end(self) -> None:
            if not self.trainer.sanity_checking:
                seen.append(float(self.trainer.callback_metrics["val_loss"]))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    torch.manual_seed(0)
    x = torch.randn(128, 8, generator=torch.Generator().manual_seed(0))
    train = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
    val = DataLoader(TensorDataset(x[:32], x[:32].sum(1, keepdim=True)), batch_size=16)
    trainer = quiet_lightning([OptituiCallback(tmp_path / "run")], max_epochs=3)
    trainer.fit(Module(), train, val)
    with RunReader(tmp_path / "run") as r:
        vals = [(step, loss) for _, step, _, loss in r.val()]
    assert len(seen) == 3  # one per epoch, the sanity check not counted
    assert vals == [(8 * (i + 1), pytest.approx(v)) for i, v in enumerate(seen)]
