"""The Lightning callback on a real (tiny) Lightning fit, steered through the run store."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from collections import Counter
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


class Logs(Tiny):
    """Logs with self.log and log_dict in training and validation; measures each step's
    first-group health by hand (the update the step applied)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[dict[str, float]] = []
        self.health: list[tuple[float, float, float]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self.net(x)
        loss = nn.functional.mse_loss(out, y)
        mae = (out - y).abs().mean().detach()
        self.steps.append({"mae": float(mae), "loss": float(loss.detach())})
        self.log("mae", mae)
        self.log_dict({"train/seen": float(self.global_step), "lr_scale": 2.0})
        self.log("loss", loss)  # a name optitui records itself: kept as train/loss
        self.log("ep", float(batch_idx), on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))
        self.log_dict({"val_acc": 0.5 + self.current_epoch})

    def configure_optimizers(self) -> Any:
        config = super().configure_optimizers()
        opt = config["optimizer"]
        before: list[torch.Tensor] = []

        def pre(o: Any, a: Any, k: Any) -> None:
            before[:] = [p.detach().clone() for p in o.param_groups[0]["params"]]

        def post(o: Any, a: Any, k: Any) -> None:
            ps = o.param_groups[0]["params"]
            w = torch.cat([b.reshape(-1) for b in before])
            dw = torch.cat([(p.detach() - b).reshape(-1) for p, b in zip(ps, before, strict=True)])
            g = torch.cat([p.grad.reshape(-1) for p in ps])
            self.health.append((float(g.norm()), float(w.norm()), float(dw.norm() / w.norm())))

        opt.register_step_pre_hook(pre)
        opt.register_step_post_hook(post)
        return config


def test_what_the_module_logs_is_recorded_under_its_own_names_with_no_read_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync_counter: Counter[str]
) -> None:
    from optitui.trainer.probe.watch import Probe

    assert Probe.__init__.__kwdefaults__ is not None
    monkeypatch.setitem(Probe.__init__.__kwdefaults__, "flush_seconds", 1e9)  # steps only
    torch.manual_seed(0)
    model = Logs()
    cb = OptituiCallback(tmp_path / "run", flush_every=8)
    fit = trainer(cb, 32)
    fit.fit(model, loader(), loader())  # 16 steps an epoch, a validation after each
    # the losses, the module's step values and its epoch values: one read per flush (4 in
    # training, one at the end for the last validation's), one per validation's val loss
    assert sync_counter == Counter({"tolist": 5, "__float__": 2})
    with RunReader(tmp_path / "run") as r:
        cols = r.read_metrics().columns
        logged = r.read_logged().columns
    assert list(cols["user:mae"]) == pytest.approx([s["mae"] for s in model.steps])
    assert list(cols["user:train/loss"]) == pytest.approx([s["loss"] for s in model.steps])
    assert list(cols["user:train/seen"]) == list(range(32))
    assert list(cols["user:lr_scale"]) == [2.0] * 32
    assert not {"user:ep", "user:val_acc", "user:val_loss"} & set(cols)  # not per step
    # epoch values at the step they were computed at; val_loss is the run's val loss
    assert list(logged["step"]) == [16, 16, 32, 32]
    assert list(logged["user:val_acc"])[::2] == [0.5, 1.5]
    assert list(logged["user:ep"])[1::2] == [7.5, 7.5]
    assert "user:val_loss" not in logged and "user:val/val_loss" not in logged
    # optimizer health through Lightning's closure step: steps 1 and 17 measured
    for s in (0, 16):
        got = [cols[f"{k}/0"][s] for k in ("grad_norm", "param_norm", "update_ratio")]
        assert got == pytest.approx(list(model.health[s]), rel=1e-4)
    assert math.isnan(cols["update_ratio/0"][1])


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
