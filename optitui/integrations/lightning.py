"""Lightning: ``Trainer(callbacks=[OptituiCallback()])`` gives a fit the optitui dashboard.

Works with ``lightning.pytorch`` (tried first) and ``pytorch_lightning``; the
callback only needs the hooks both call, so either Trainer takes it.

- The first optimizer is watched, with the scheduler configured for it.
  Lightning keeps stepping that scheduler; the probe wraps its ``step`` so that
  an lr edit is a multiplier the schedule does not overwrite.
- Each optimizer step is one probe step, taken in ``on_train_batch_end`` after
  Lightning stepped the scheduler. The loss is what ``training_step`` returned
  (summed over the batches of a gradient-accumulation window, which Lightning
  already divides by their number). Clipping from the dashboard happens in
  ``on_before_optimizer_step``.
- Stop sets ``trainer.should_stop``. Pause blocks in the callback.
- The validation loss the module logs (``self.log("val_loss", ...)``, or
  ``val/loss`` and the like) is recorded after each validation.
- Everything else the module logs with ``self.log``/``log_dict`` is recorded under
  its own name (Lightning's: ``acc``, ``acc_step``, ``acc_epoch``): step values with
  their optimizer step, epoch values (a validation's, a training epoch's) at the step
  they were computed at. Lightning holds them as device tensors; they are read in the
  probe's batched flush.
- Save writes a Lightning checkpoint (``trainer.save_checkpoint``) into the run's
  ``checkpoints/`` folder as ``ID.ckpt``; it carries the lr multipliers in this
  callback's state. Restore loads one back into the module, optimizers and
  schedulers; the Trainer's global step and data position go on.
- Under torch.distributed (``strategy="ddp"``, any launcher) every rank has a
  probe: rank 0 makes the store and reads commands, the ranks meet every
  ``sync_every`` steps, and every rank applies each command at the same step.
  Saves call ``trainer.save_checkpoint`` on every rank (Lightning writes from
  rank 0); restore loads the file rank 0 chose on every rank (a filesystem the
  ranks share, as Lightning's own resume needs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    import pytorch_lightning as pl  # type: ignore[no-redef]

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
from optitui.trainer.core.device import batch_size
from optitui.trainer.loop.metric_checks import bad_name
from optitui.trainer.probe.watch import Probe

LIMITS = (
    "restore loads model, optimizers and schedulers from a Lightning checkpoint; the "
    "Trainer's global step and data position go on",
    "the loss is what training_step returns; the first optimizer is watched",
    "swap-optimizer is not available (Lightning holds the optimizer)",
)


class OptituiCallback(pl.Callback):
    """Serve a Lightning fit's run store: loss, every group's lr, live edits, pause,
    stop, Lightning checkpoints and the range test over the fit's own batches."""

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
        self._loss: torch.Tensor | None = None
        self._stepped = 0
        self._samples = 0
        self._handle: Any = None
        self._loaded: dict[str, Any] | None = None  # from a checkpoint the fit resumed from
        self._trainer: Any = None
        self._module: Any = None

    # -- the fit -----------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.probe is not None or not trainer.optimizers:
            return
        opt = trainer.optimizers[0]
        sched = next(
            (
                c.scheduler
                for c in trainer.lr_scheduler_configs
                if getattr(c.scheduler, "optimizer", None) is opt
            ),
            None,
        )
        self._trainer, self._module = trainer, pl_module
        self.probe = self.settings.make_probe(
            opt,
            pl_module,
            sched,
            mode="lightning",
            limits=LIMITS,
            meta={"framework": f"{pl.__name__} {getattr(pl, '__version__', '?')}"},
            backend=_Checkpoints(self),
            first_step=trainer.global_step,
            hooks=False,  # on_before_optimizer_step calls before_step
        )
        if self._loaded:
            load_lr_state(self.probe, self._loaded)
        self._handle = opt.register_step_post_hook(self._count)
        if self.probe.should_stop:
            trainer.should_stop = True

    def _count(self, opt: Any, args: Any, kwargs: Any) -> None:
        self._stepped += 1

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.probe is not None and optimizer is self.probe.optimizer:
            self.probe.before_step()  # the lr it will use; clipping, when the run clips

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        p = self.probe
        if p is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            d = loss.detach()
            self._loss = d if self._loss is None else self._loss + d
        self._samples += batch_size(batch)  # shapes only: nothing is read from the device
        if not self._stepped:
            return  # accumulating gradients: no optimizer step yet
        self._stepped = 0
        (loss, self._loss), (samples, self._samples) = (self._loss, None), (self._samples, 0)
        p.epoch = trainer.current_epoch
        logged = logged_now(trainer, "train", True)  # the step's self.log values, on the device
        p.step(loss, samples, metrics=logged)  # the step boundary: commands, pause
        if p.should_stop:
            trainer.should_stop = True

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """The validation loss the module logged (``val_loss``, or the like), once per
        validation; the sanity check before training is not a validation of the run."""
        if self.probe is None or trainer.sanity_checking:
            return
        name = val_name(trainer.callback_metrics)
        value = val_metric(trainer.callback_metrics)
        if value is not None:
            self.probe.val_loss(value)  # one read per validation
        logged = logged_now(trainer, "val", False, skip=name)  # (the val loss is recorded)
        if logged:
            self.probe.log(**logged)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """The epoch values of what training_step logged (``on_epoch=True``)."""
        if self.probe is not None:
            logged = logged_now(trainer, "train", False)
            if logged:
                self.probe.log(**logged)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._close(None)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._close(exception)

    def _close(self, error: BaseException | None) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self.probe is not None:
            self.probe.close(error)
            self.probe = None

    # -- what Lightning checkpoints keep of this callback ---------------------------
    def state_dict(self) -> dict[str, Any]:
        return lr_state(self.probe)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = dict(state_dict)


def logged_now(trainer: Any, prefix: str, on_step: bool, skip: str | None = None) -> dict[str, Any]:
    """What the module logged with ``self.log``/``log_dict`` for the loop running now: the
    step values (``on_step``) or the epoch values, by Lightning's names (a name optitui
    records itself, ``loss``, as ``<prefix>/loss``), as the tensors Lightning holds.

    Read from the loop's result collection: ``trainer.logged_metrics`` accumulates,
    keeping older values (an epoch's, the last validation's) beside the new ones.
    Where that collection is not there, the values of ``logged_metrics``."""
    results = getattr(trainer, "_results", None)
    try:
        values = dict(results.metrics(on_step)["log"])  # type: ignore[union-attr]
    except Exception:  # another Lightning than the ones this was written against
        values = dict(trainer.logged_metrics)
    return {
        (name if bad_name(name) is None else f"{prefix}/{name}"): v
        for name, v in values.items()
        if name != skip
    }


#: the names a Lightning module logs its validation loss under, most usual first
VAL_NAMES = ("val_loss", "val/loss", "val_loss_epoch", "validation_loss", "valid_loss")


def val_name(metrics: Mapping[str, Any]) -> str | None:
    """The name of the validation loss among logged metrics: a usual name, else the only
    name that starts with "val" and has "loss" in it."""
    name = next((n for n in VAL_NAMES if n in metrics), None)
    if name is None:
        found = [n for n in metrics if n.lower().startswith("val") and "loss" in n.lower()]
        name = found[0] if len(found) == 1 else None
    return name


def val_metric(metrics: Mapping[str, Any]) -> float | None:
    """The validation loss among logged metrics (see :func:`val_name`)."""
    name = val_name(metrics)
    if name is None:
        return None
    value = metrics[name]
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


class _Checkpoints:
    """Save and restore from the dashboard, in Lightning's own checkpoint format."""

    def __init__(self, callback: OptituiCallback) -> None:
        self.cb = callback

    def _folder(self) -> Path:
        probe = self.cb.probe
        assert probe is not None and probe.trainer is not None
        return probe.trainer.paths.checkpoints

    def save(self, reason: str, tag: str | None, answer: Answer | None = None) -> str:
        probe, trainer = self.cb.probe, self.cb._trainer
        assert probe is not None and probe.trainer is not None
        step = probe.steps
        cid = checkpoint.new_id(step, reason) + (f"-{tag}" if tag else "")
        path = self._folder() / f"{cid}.ckpt"
        try:
            trainer.save_checkpoint(path, weights_only=False)  # with optimizers and schedulers
        except Exception as exc:
            if answer is None:
                raise
            answer(None, f"Lightning could not save {path.name}: {type(exc).__name__}: {exc}")
            return cid
        if answer is not None:  # Lightning writes on rank 0; the others answer nobody
            if probe.silent or path.is_file():
                answer(cid, None)
            else:
                answer(None, f"{path.name} is not on disk after trainer.save_checkpoint")
        probe.trainer.recorder.put(
            Event(
                step,
                "checkpoint",
                f"saved {cid} ({reason}; Lightning checkpoint {path.name})",
                {"marker": "save", "id": cid, "reason": reason, "tag": tag, "path": str(path)},
            )
        )
        return cid

    def find(self, ref: str) -> Path:
        found = sorted(self._folder().glob("*.ckpt"), key=lambda p: (p.stat().st_mtime, p.name))
        if not found:
            raise checkpoint.CheckpointError("this run has no Lightning checkpoints")
        if ref == "latest":
            return found[-1]
        hits = [p for p in found if p.stem == ref] or [p for p in found if p.stem.startswith(ref)]
        if not hits and (ref.isascii() and ref.isdigit()):
            hits = [p for p in found if p.stem.startswith(f"step{int(ref):08d}-")]
        if len(hits) != 1:
            have = ", ".join(p.stem for p in found)
            raise checkpoint.CheckpointError(
                f"{ref!r} matches {len(hits)} checkpoints; have: {have}"
            )
        return hits[0]

    def restore(self, ref: str) -> str:
        trainer, module, probe = self.cb._trainer, self.cb._module, self.cb.probe
        assert probe is not None
        path = self.find(ref)
        try:
            ckpt = trainer.strategy.load_checkpoint(path)
        except Exception as exc:
            raise checkpoint.CheckpointError(f"{path.name}: cannot be loaded: {exc}") from None
        check_model_state(module, ckpt.get("state_dict", {}))
        saved_opts = ckpt.get("optimizer_states", [])
        if len(saved_opts) != len(trainer.optimizers):
            raise checkpoint.CheckpointError(f"{path.name}: holds other optimizers")
        for opt, saved in zip(trainer.optimizers, saved_opts, strict=True):
            check_optimizer_state(opt, saved)
        trainer.strategy.load_model_state_dict(ckpt)
        trainer.strategy.load_optimizer_state_dict(ckpt)
        configs = trainer.lr_scheduler_configs
        for config, saved in zip(configs, ckpt.get("lr_schedulers", []), strict=False):
            config.scheduler.load_state_dict(saved)
        ours = ckpt.get("callbacks", {}).get(self.cb.state_key)
        load_lr_state(probe, ours)
        return path.stem
