"""Hugging Face: ``Trainer(..., callbacks=[OptituiCallback()])`` gives training the dashboard.

The HF Trainer logs only the first param group's lr itself; the run store has
every group's, every step.

- The Trainer's own optimizer (unwrapped from accelerate's wrapper) and
  scheduler are watched. The Trainer keeps stepping its scheduler; the probe
  wraps its ``step`` so that an lr edit is a multiplier the schedule keeps.
- Each optimizer step is one probe step, taken in ``on_step_end`` (after the
  Trainer stepped the scheduler). The loss is the scalar the Trainer passes to
  ``backward()`` (summed over a gradient-accumulation window, whose parts the
  Trainer scales), kept on the device and read in batches like any other.
- Stop sets ``control.should_training_stop``; pause blocks in the callback.
- Each evaluation's ``eval_loss`` is recorded as the validation loss.
- ``scheduler.get_last_lr()`` reports the lr applied (multipliers included), so
  the Trainer's ``log_history`` and whatever it reports to agree with optitui.
- Save sets ``control.should_save``: the Trainer writes its usual
  ``output_dir/checkpoint-N`` right after this step (model, optimizer,
  scheduler, RNG, trainer state); the callback adds ``optitui.json`` with the lr
  multipliers. Restore loads model, optimizer and scheduler back from such a
  folder; the Trainer's global step and data position go on.
- Under torch.distributed (torchrun, accelerate launch) every process has a
  probe: rank 0 makes the store and reads commands, the ranks meet every
  ``sync_every`` steps, and every process applies each command at the same
  step. A save asks every process's Trainer to save after that step; restore
  loads the folder rank 0 chose on every process (``output_dir`` on a
  filesystem they share, as the Trainer's own resume needs).
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import TrainerCallback

from optitui.integrations import (
    Settings,
    check_model_state,
    check_optimizer_state,
    load_lr_state,
    lr_state,
)
from optitui.store.records import Event
from optitui.trainer.control.saver import Answer
from optitui.trainer.core import checkpoint
from optitui.trainer.entry.script_mode import innermost
from optitui.trainer.loop.metric_checks import bad_name
from optitui.trainer.probe.loss_tap import LossTap
from optitui.trainer.probe.watch import Probe

STATE_FILE = "optitui.json"
LIMITS = (
    "restore loads model, optimizer and scheduler from output_dir/checkpoint-N; the "
    "Trainer's global step and data position go on",
    "the loss is the scalar passed to backward() (summed over gradient accumulation)",
    "swap-optimizer is not available (the Trainer holds the optimizer)",
)


def _torch_scheduler(sched: Any) -> Any:
    """accelerate wraps the scheduler (``.scheduler``); the probe wants the torch one."""
    kinds = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    while sched is not None and not isinstance(sched, kinds):
        sched = getattr(sched, "scheduler", None)
    return sched


class OptituiCallback(TrainerCallback):  # type: ignore[misc]
    """Serve an HF Trainer's run store: loss, every group's lr, live edits, pause, stop,
    HF checkpoints and the range test over the Trainer's own batches."""

    def __init__(
        self,
        run_dir: Path | str | None = None,
        *,
        root: Path | str = "runs",
        name: str | None = None,
        flush_every: int = 64,
        sync_every: int | None = None,
        health_every: int | None = None,
        health_copy_gb: float | None = None,
    ) -> None:
        self.settings = Settings(
            run_dir, root, name, flush_every, sync_every, health_every, health_copy_gb
        )
        self.probe: Probe | None = None
        self.tap = LossTap()
        self.args: Any = None
        self.state: Any = None
        self.model: Any = None
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.in_step = False
        #: a save asked for: the Trainer writes it after this step, then on_save answers
        self.save_wanted: tuple[str, str | None] | None = None
        self.save_answers: list[Answer] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.probe is not None:
            return
        model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
        if model is None or optimizer is None:
            return
        self.args, self.state, self.model = args, state, model
        self.optimizer = innermost(optimizer)
        self.scheduler = _torch_scheduler(kwargs.get("lr_scheduler"))
        self.tap.start()
        self.probe = self.settings.make_probe(
            self.optimizer,
            model,
            self.scheduler,
            mode="transformers",
            limits=LIMITS,
            meta={
                "framework": f"transformers {transformers.__version__}",
                "output_dir": str(args.output_dir),
            },
            backend=_Checkpoints(self),
            first_step=state.global_step,
        )
        self._after_boundary(control)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        p = self.probe
        if p is None:
            return
        p.epoch = int(state.epoch or 0)
        self.in_step = True
        try:
            # samples per optimizer step on this process, as the Trainer batches them
            p.step(
                self.tap.take(), args.per_device_train_batch_size * args.gradient_accumulation_steps
            )
        finally:
            self.in_step = False
        self._after_boundary(control)

    def _after_boundary(self, control: Any) -> None:
        assert self.probe is not None
        if self.probe.should_stop:
            control.should_training_stop = True
        if self.save_wanted is not None:
            control.should_save = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        p = self.probe
        if p is None or p.trainer is None:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir() and not p.silent:  # one writer (the folder is shared)
            (folder / STATE_FILE).write_text(json.dumps(lr_state(p)))
        reason, tag = self.save_wanted or ("transformers", None)
        self.save_wanted = None
        waiting, self.save_answers = self.save_answers, []
        for answer in waiting:  # the Trainer has written the folder: the save is done
            if p.silent or folder.is_dir():
                answer(folder.name, None)
            else:
                answer(None, f"the Trainer saved, but {folder} is not there")
        p.trainer.recorder.put(
            Event(
                p.steps,
                "checkpoint",
                f"saved {folder.name} ({reason})",
                {"marker": "save", "id": folder.name, "reason": reason, "tag": tag},
            )
        )

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
    ) -> None:
        """The Trainer's ``eval_loss``, recorded at the step it was evaluated at."""
        p = self.probe
        value = metrics.get("eval_loss") if isinstance(metrics, dict) else None
        if p is not None and isinstance(value, int | float):
            p.val_loss(float(value))

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        """Everything the Trainer logs (its loss, grad_norm, learning_rate, each
        evaluation's eval_*), under its own name at the step it was logged at; the names
        optitui records itself (loss, grad_norm, epoch) as ``train/<name>``."""
        p = self.probe
        if p is None or not isinstance(logs, dict):
            return
        numbers = {k: v for k, v in logs.items() if isinstance(v, int | float)}
        p.log(**{(k if bad_name(k) is None else f"train/{k}"): v for k, v in numbers.items()})

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tap.stop()
        waiting, self.save_answers = self.save_answers, []
        for answer in waiting:
            answer(None, "training ended before the Trainer saved")
        if self.probe is not None:
            self.probe.close()
            self.probe = None


class _Checkpoints:
    """Save and restore from the dashboard, as the HF Trainer's own checkpoint folders."""

    def __init__(self, callback: OptituiCallback) -> None:
        self.cb = callback

    def save(self, reason: str, tag: str | None, answer: Answer | None = None) -> str:
        cb = self.cb
        cb.save_wanted = (reason, tag)
        if answer is not None:
            cb.save_answers.append(answer)
        # written by the Trainer after this step (at the first one, when asked before it)
        name = f"checkpoint-{cb.state.global_step + (0 if cb.in_step else 1)}"
        probe = cb.probe
        if probe is not None and probe.trainer is not None and probe.trainer.paused:
            probe.trainer.recorder.put(
                Event(
                    probe.steps,
                    "info",
                    f"the Trainer writes {name} as it leaves this step: resume (or step) to save",
                )
            )
        return name

    def find(self, ref: str) -> Path:
        out = Path(self.cb.args.output_dir)
        found = sorted(
            (p for p in out.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)),
            key=lambda p: int(p.name.split("-")[1]),
        )
        if not found:
            raise checkpoint.CheckpointError(f"no checkpoint-N folders in {out}")
        if ref == "latest":
            return found[-1]
        name = f"checkpoint-{int(ref)}" if (ref.isascii() and ref.isdigit()) else ref
        for p in found:
            if p.name == name:
                return p
        have = ", ".join(p.name for p in found)
        raise checkpoint.CheckpointError(f"no checkpoint {ref!r} in {out}; have: {have}")

    def restore(self, ref: str) -> str:
        cb = self.cb
        assert cb.probe is not None
        folder = self.find(ref)
        weights = _load_weights(folder)
        check_model_state(cb.model, weights, allow_tied=True)
        sched_file, state_file = folder / "scheduler.pt", folder / STATE_FILE
        try:
            opt = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
            sched = None
            if cb.scheduler is not None and sched_file.is_file():
                sched = torch.load(sched_file, map_location="cpu", weights_only=True)
            saved = json.loads(state_file.read_text()) if state_file.is_file() else None
        except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as exc:
            raise checkpoint.CheckpointError(f"{folder.name}: cannot be loaded: {exc}") from None
        check_optimizer_state(cb.optimizer, opt)
        cb.model.load_state_dict(weights, strict=False)  # tied weights come along
        cb.optimizer.load_state_dict(opt)
        if sched is not None:
            cb.scheduler.load_state_dict(sched)
        load_lr_state(cb.probe, saved)
        return folder.name


def _load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The model state of a checkpoint folder: safetensors (sharded or not) or torch."""
    index = folder / "model.safetensors.index.json"
    try:
        if index.is_file() or (folder / "model.safetensors").is_file():
            from safetensors.torch import load_file

            files = (
                sorted(set(json.loads(index.read_text())["weight_map"].values()))
                if index.is_file()
                else ["model.safetensors"]
            )
            out: dict[str, torch.Tensor] = {}
            for name in files:
                out.update(load_file(folder / name))
            return out
        bin_file = folder / "pytorch_model.bin"
        if bin_file.is_file():
            loaded = torch.load(bin_file, map_location="cpu", weights_only=True)
            return dict(loaded)
    except Exception as exc:
        raise checkpoint.CheckpointError(f"{folder.name}: weights cannot be read: {exc}") from None
    raise checkpoint.CheckpointError(f"{folder.name}: holds no model weights")
