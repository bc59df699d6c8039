"""The five ways a job runs, each started in-process on a tiny task for the acknowledgement
audit: a ``setup()`` job (the trainer's own loop), ``optitui.watch`` in an own loop,
zero-code mode on a loop that never mentions optitui, a Lightning fit and an HF Trainer.

Each has two param groups, SGD-like momentum where it can, and a scheduler (so detach,
attach and multipliers mean something), and steps a little slowly (a few ms) so that a
command lands while it runs. :class:`Mode` gives the test what it needs to check an
effect in-process: the optimizer, the model, the run directory, and how to stop.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from frameworks import quiet_lightning, tiny_gpt2, token_rows
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from optitui.store.layout import RunPaths

STEP_S = 0.003  # each step sleeps this long: commands land mid-run


@dataclass
class Mode:
    name: str
    paths: RunPaths
    model: nn.Module
    optimizer: Callable[[], torch.optim.Optimizer]  # the live one (a swap replaces it)
    thread: threading.Thread
    finish: Callable[[], None]  # after the run ended: close what the mode left open
    #: what this mode cannot do: command kind -> a word of the reason it is rejected with
    refuses: dict[str, str] = field(default_factory=dict)
    rewinds: bool = True  # restore goes back in steps (the frameworks' loops go on)
    checkpoints: Callable[[], list[str]] = lambda: []  # the saved checkpoints' ids
    errors: list[BaseException] = field(default_factory=list)


def data(n: int = 256) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, x @ torch.randn(8, 1, generator=g))


def two_groups(model: nn.Sequential) -> list[dict[str, Any]]:
    return [
        {"params": model[0].parameters(), "name": "body"},
        {"params": model[2].parameters(), "name": "head", "lr": 0.01},
    ]


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))


def _thread(target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as exc:  # StopTraining included: the test looks at it
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _listing(paths: RunPaths) -> Callable[[], list[str]]:
    from optitui.trainer.core import checkpoint

    return lambda: [m.id for m in checkpoint.listing(paths.checkpoints)]


def setup_job(tmp: Path) -> Mode:
    from optitui.store.layout import create_run_dir
    from optitui.trainer.core.job import Job
    from optitui.trainer.loop.trainer import Trainer

    model = mlp()
    opt = torch.optim.SGD(two_groups(model), lr=0.05, momentum=0.9)

    def step_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        time.sleep(STEP_S)
        x, y = batch
        return nn.functional.mse_loss(m(x), y)

    job = Job(
        model=model,
        optimizer=opt,
        train_data=DataLoader(data(), batch_size=16, shuffle=True),
        step_fn=step_fn,
        scheduler=torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.999),
    )
    paths = create_run_dir(tmp, "setup", tmp / "setup")
    trainer = Trainer(job, torch.device("cpu"), paths, flush_every=4)
    errors: list[BaseException] = []
    return Mode(
        "setup()",
        paths,
        model,
        lambda: trainer.optimizer,
        _thread(trainer.run, errors),
        lambda: None,
        checkpoints=_listing(paths),
        errors=errors,
    )


def _own_loop(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, probe: Any) -> None:
    loader = DataLoader(data(), batch_size=16, shuffle=True)
    while True:
        for x, y in loader:
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if probe is not None:
                probe.step(loss, samples=len(x))
                if probe.should_stop:
                    return
            sched.step()
            time.sleep(STEP_S)


#: a race runs the job's own steps on its own data: a loop that is not optitui's says so
RACE_REFUSES = {
    "race": "own steps on its own data",
    "race-apply": "no race has run yet",
    "race-cancel": "no race is running",
}
PROBE_REFUSES = {"swap-optimizer": "holds its optimizer object", **RACE_REFUSES}


def watch_loop(tmp: Path) -> Mode:
    from optitui.trainer.probe.watch import watch

    model = mlp()
    opt = torch.optim.SGD(two_groups(model), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.999)
    probe = watch(opt, model, scheduler=sched, run_dir=tmp / "watch", flush_every=4)
    assert probe.trainer is not None
    paths = probe.trainer.paths
    errors: list[BaseException] = []
    thread = _thread(lambda: (_own_loop(model, opt, sched, probe), probe.close())[0], errors)
    return Mode(
        "watch",
        paths,
        model,
        lambda: opt,
        thread,
        probe.close,
        refuses=dict(PROBE_REFUSES),
        checkpoints=_listing(paths),
        errors=errors,
    )


def zero_code(tmp: Path) -> Mode:
    from optitui.trainer.entry.script_mode import ZeroCode
    from optitui.trainer.probe.watch import ENV_RUN_DIR

    os.environ[ENV_RUN_DIR] = str(tmp / "zero")  # what `optitui run` gives the script
    zero = ZeroCode()
    zero.install()
    model = mlp()
    opt = torch.optim.SGD(two_groups(model), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.999)
    errors: list[BaseException] = []
    thread = _thread(lambda: _own_loop(model, opt, sched, None), errors)
    paths = RunPaths(tmp / "zero")
    deadline = time.monotonic() + 30
    while zero.probe is None and time.monotonic() < deadline:
        time.sleep(0.01)

    def finish() -> None:
        zero.uninstall()
        if zero.probe is not None:
            zero.probe.close()
        os.environ.pop(ENV_RUN_DIR, None)

    return Mode(
        "zero-code",
        paths,
        model,
        lambda: opt,
        thread,
        finish,
        refuses=dict(PROBE_REFUSES),
        checkpoints=_listing(paths),
        errors=errors,
    )


def lightning_fit(tmp: Path) -> Mode:
    import lightning.pytorch as pl

    from optitui.integrations.lightning import OptituiCallback

    class Module(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            time.sleep(STEP_S)
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(two_groups(self.net), lr=0.05, momentum=0.9)
            sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.999)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    module = Module()
    trainer = quiet_lightning([OptituiCallback(tmp / "lightning", flush_every=4)], max_steps=10**6)
    errors: list[BaseException] = []
    loader = DataLoader(data(), batch_size=16, shuffle=True)
    thread = _thread(lambda: trainer.fit(module, loader), errors)
    paths = RunPaths(tmp / "lightning")
    folder = paths.checkpoints
    return Mode(
        "Lightning",
        paths,
        module,
        lambda: trainer.optimizers[0],
        thread,
        lambda: None,
        refuses={"swap-optimizer": "the Lightning Trainer holds the optimizer", **RACE_REFUSES},
        rewinds=False,
        checkpoints=lambda: sorted(p.stem for p in folder.glob("*.ckpt")),
        errors=errors,
    )


def hf_trainer(tmp: Path) -> Mode:
    import transformers

    from optitui.integrations.transformers import OptituiCallback

    model = tiny_gpt2()

    class Slow(transformers.TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            time.sleep(STEP_S)

    args = transformers.TrainingArguments(
        output_dir=str(tmp / "hf-out"),
        max_steps=1_000_000,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        warmup_steps=0,
        lr_scheduler_type="linear",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    cb = OptituiCallback(tmp / "hf", flush_every=4)
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=token_rows(),
        callbacks=[Slow(), cb],
    )
    errors: list[BaseException] = []
    thread = _thread(trainer.train, errors)
    out = tmp / "hf-out"
    return Mode(
        "HF Trainer",
        RunPaths(tmp / "hf"),
        model,
        lambda: cb.optimizer,
        thread,
        lambda: None,
        refuses={"swap-optimizer": "the HF Trainer holds the optimizer", **RACE_REFUSES},
        rewinds=False,
        checkpoints=lambda: sorted(p.name for p in out.glob("checkpoint-*")),
        errors=errors,
    )


MODES: dict[str, Callable[[Path], Mode]] = {
    "setup": setup_job,
    "watch": watch_loop,
    "zero-code": zero_code,
    "lightning": lightning_fit,
    "hf": hf_trainer,
}
