"""The Lightning callback on a real (tiny) Lightning fit, steered through the run store."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, wait_for
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from optitui.store.client import send
from optitui.store.layout import RunPaths
from optitui.store.reader import RunReader

pl = pytest.importorskip("lightning.pytorch")
from optitui.integrations.lightning import OptituiCallback  # noqa: E402


class Tiny(pl.LightningModule):  # type: ignore[misc,name-defined]
    """Two param groups, a step-interval StepLR; records the lr every optimizer step used."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.used: list[list[float]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> Any:
        groups: list[dict[str, Any]] = [
            {"params": self.net[0].parameters(), "name": "body"},
            {"params": self.net[2].parameters(), "name": "head", "lr": 0.01},
        ]
        opt = torch.optim.SGD(
            groups,
            lr=0.05,
            momentum=0.9,
        )
        opt.register_step_pre_hook(
            lambda o, a, k: self.used.append([g["lr"] for g in o.param_groups])
        )
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=40, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def loader() -> DataLoader[Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)


def trainer(callback: Any, max_steps: int) -> Any:
    return pl.Trainer(
        max_steps=max_steps,
        callbacks=[callback],
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_a_lightning_fit_is_steered_from_the_store(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Tiny()
    cb = OptituiCallback(tmp_path / "run", flush_every=4)
    fit = threading.Thread(target=lambda: trainer(cb, 100_000).fit(model, loader()))
    fit.start()
    paths = RunPaths(tmp_path / "run")
    try:
        wait_for(lambda: cb.probe is not None and cb.probe.steps > 3, 60, "training")
        probe = cb.probe
        assert probe is not None

        # an lr edit: the very next step uses it, in every group, and the schedule keeps on
        out = send(paths, "set", {"values": {"lr": 0.02}}).outcome
        assert out is not None and out.applied
        wait_for(lambda: len(model.used) > 85, 30, "steps after the edit")
        assert model.used[out.step - 1] != [0.02, 0.02]
        assert model.used[out.step] == pytest.approx([0.02, 0.02], rel=1e-12)
        halved = next(s for s in range(out.step, 85) if (s + 1) % 40 == 0) + 1
        assert model.used[halved] == pytest.approx([0.01, 0.01], rel=1e-12)  # StepLR's shape

        # pause: the step count stands still; save and restore while paused
        assert send(paths, "pause").outcome.applied  # type: ignore[union-attr]
        wait_for(lambda: probe.state == "paused", 10, "paused")
        frozen = len(model.used)
        threading.Event().wait(0.3)
        assert len(model.used) == frozen and probe.steps == frozen
        saved = send(paths, "save", {"tag": "mid"}).outcome
        assert saved is not None and saved.applied
        kept = weights(model)
        (ckpt,) = paths.checkpoints.glob("*.ckpt")
        assert ckpt.name.endswith("-mid.ckpt")
        assert send(paths, "resume").outcome.applied  # type: ignore[union-attr]
        wait_for(lambda: len(model.used) > frozen + 10, 30, "steps after resume")
        assert send(paths, "pause").outcome.applied  # type: ignore[union-attr]
        wait_for(lambda: probe.state == "paused", 10, "paused again")
        assert any(not torch.equal(a, b) for a, b in zip(weights(model), kept, strict=True))
        nope = send(paths, "restore", {"id": "nope"}).outcome
        assert nope is not None and not nope.applied and "matches 0 checkpoints" in str(nope.reason)
        back = send(paths, "restore", {"id": "latest"}).outcome
        assert back is not None and back.applied, back
        assert all(torch.equal(a, b) for a, b in zip(weights(model), kept, strict=True))
        assert probe.trainer is not None and probe.trainer.lr.mult != [1.0, 1.0]

        assert send(paths, "stop").outcome.applied  # type: ignore[union-attr]
        fit.join(30)
        assert not fit.is_alive()
    finally:
        if fit.is_alive() and cb.probe is not None and cb.probe.trainer is not None:
            cb.probe.trainer.request_stop("test over")
            cb.probe.trainer.resume()
            fit.join(30)
    with RunReader(paths.root) as r:
        st = r.status()
        assert st.state == "stopped" and (st.samples_per_s or 0) > 0
        cols = r.read_metrics()
        assert cols.length == st.step and {"loss", "lr/0", "lr/1"} <= set(cols.columns)
        assert r.meta()["probe"]["mode"] == "lightning"
        kinds = [e.data.get("marker") for e in r.events() if e.data]
        assert "save" in kinds and "restore" in kinds


def test_the_older_package_name(tmp_path: Path) -> None:
    """With only ``pytorch_lightning`` importable, the callback is built on it and a
    pytorch_lightning fit records under it."""
    pytest.importorskip("pytorch_lightning")
    code = f"""
import sys
sys.modules["lightning"] = None  # as if only pytorch_lightning were installed
import torch, pytorch_lightning as ptl
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from optitui.integrations.lightning import OptituiCallback, pl
assert pl is ptl, pl

class Tiny(ptl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(8, 1)
    def training_step(self, batch, i):
        return nn.functional.mse_loss(self.net(batch[0]), batch[1])
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

x = torch.randn(64, 8)
cb = OptituiCallback({str(tmp_path / "old")!r})
ptl.Trainer(max_steps=12, callbacks=[cb], accelerator="cpu", devices=1, logger=False,
    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
).fit(Tiny(), DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    with RunReader(tmp_path / "old") as r:
        assert r.status().state == "finished" and r.read_metrics().length == 12
