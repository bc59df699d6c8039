"""The script contract: ``setup(device)`` returns a :class:`Job`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from optitui.trainer.core.health import check_copy_gb

LossFn = Callable[[Any, Any], torch.Tensor]
StepFn = Callable[[nn.Module, Any], torch.Tensor]
Scheduler = LRScheduler | ReduceLROnPlateau


class JobError(ValueError):
    """A Job that cannot be trained; the message names the field."""


@dataclass
class Job:
    """Everything the trainer needs to run a training loop.

    Give ``loss_fn(output, target)`` for ``(x, y)`` batches, or
    ``step_fn(model, batch) -> loss`` for anything else (dict batches, models
    that compute their own loss). Param groups may carry a ``name`` key; it
    is shown instead of the group's index.
    """

    model: nn.Module
    """The model; the trainer does not move it, ``setup(device)`` does."""
    optimizer: Optimizer
    """Any torch optimizer, with any number of param groups."""
    train_data: Iterable[Any]
    """Any re-iterable (a DataLoader, a list of batches). One pass is one epoch."""
    loss_fn: LossFn | None = None
    """``loss_fn(model(x), y)`` for ``(x, y)`` batches."""
    step_fn: StepFn | None = None
    """``step_fn(model, batch) -> scalar loss`` for any other batch."""
    scheduler: Scheduler | None = None
    """Stepped by the trainer after every optimizer step (or epoch, see below)."""
    scheduler_interval: Literal["step", "epoch"] = "step"
    """When the scheduler steps. ReduceLROnPlateau always steps after validation."""
    val_data: Iterable[Any] | None = None
    """Validation batches; evaluated with the same loss every ``val_every`` steps."""
    val_every: int | None = None
    """Steps between evaluations; default: once per epoch."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (also shown as the ETA target)."""
    max_epochs: int | None = None
    """Stop after this many passes over ``train_data``."""
    grad_accum: int = 1
    """Micro-batches per optimizer step; the loss is averaged over them."""
    clip_grad_norm: float | None = None
    """Clip the gradients' global 2-norm to this value (also records the norm)."""
    checkpoint_every: int | None = None
    """Save a checkpoint every N optimizer steps (kept: the last ``keep_last``)."""
    checkpoint_minutes: float | None = None
    """Save a checkpoint every M minutes of training."""
    keep_last: int = 3
    """How many periodic checkpoints to keep (manual ones are always kept)."""
    keep_best: bool = True
    """Save and keep the checkpoint with the best validation loss."""
    on_divergence: str = "pause"
    """On a non-finite loss or gradient norm: ``pause``, ``rollback`` or ``ignore``."""
    rollback_lr_factor: float = 0.5
    """After a rollback, every group's lr is multiplied by this."""
    rollback_skip: int = 10
    """After a rollback, this many batches are skipped."""
    spike_factor: float = 3.0
    """Warn when the smoothed loss rises above this many times its minimum."""
    snapshot_limit_gb: float = 4.0
    """The largest state (parameters, buffers, optimizer state) snapshot in host memory
    for the divergence rollback and the range test. Above it, rollback goes to the
    newest checkpoint and the range test writes its snapshot to a file."""
    precision: str = "32"
    """``"32"``, ``"bf16"`` (autocast to bfloat16) or ``"fp16"`` (autocast to float16 with a
    GradScaler: loss scaling, unscaled clipping, overflow steps skipped and recorded)."""
    ddp: bool | None = None
    """Under torchrun: wrap the model in DistributedDataParallel (default: yes when the
    world size is above 1). A DataLoader over a map-style dataset gets a DistributedSampler."""
    sync_every: int = 16
    """Under torchrun: steps between the ranks' exchanges of commands and losses."""
    system_every: float = 2.0
    """Seconds between two samples of the machine (process CPU and memory, host memory,
    each GPU through NVML), taken on a thread of their own; 0 turns the sampler off."""
    health_every: int = 16
    """Steps between measurements of every param group's gradient norm, parameter norm and
    update ratio ||dw||/||w|| (on the device, read with the losses); 0 turns them off."""
    health_copy_gb: float = 1.0
    """The most the health measurement copies of the parameters (GB, for the length of one
    step): above it each group's update ratio is that of a share of its tensors, taken in
    turn (its gradient and parameter norms stay exact)."""
    seed: int | None = None
    """Seed python, numpy and torch before training; ``--seed`` overrides it."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata stored with the run (hyperparameters, notes)."""

    def validate(self) -> None:
        """Raise JobError naming the first field that cannot work."""
        if not isinstance(self.model, nn.Module):
            raise JobError(f"model must be a torch.nn.Module, got {type(self.model).__name__}")
        if not isinstance(self.optimizer, Optimizer):
            raise JobError(
                f"optimizer must be a torch.optim.Optimizer, got {type(self.optimizer).__name__}"
            )
        if not hasattr(self.train_data, "__iter__"):
            raise JobError(f"train_data must be iterable, got {type(self.train_data).__name__}")
        if (self.loss_fn is None) == (self.step_fn is None):
            raise JobError("give exactly one of loss_fn (for (x, y) batches) or step_fn")
        for name in ("loss_fn", "step_fn"):
            fn = getattr(self, name)
            if fn is not None and not callable(fn):
                raise JobError(f"{name} must be callable")
        if self.scheduler is not None and not isinstance(self.scheduler, Scheduler):
            raise JobError(
                "scheduler must be a torch.optim.lr_scheduler scheduler, got "
                f"{type(self.scheduler).__name__}"
            )
        if self.scheduler is not None and self.scheduler.optimizer is not self.optimizer:
            raise JobError("scheduler drives a different optimizer than the Job's")
        if self.scheduler_interval not in ("step", "epoch"):
            raise JobError("scheduler_interval must be 'step' or 'epoch'")
        if self.val_data is not None and not hasattr(self.val_data, "__iter__"):
            raise JobError("val_data must be iterable")
        for name in ("val_every", "max_steps", "max_epochs", "checkpoint_every", "sync_every"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise JobError(f"{name} must be a whole number >= 1, got {v!r}")
        h = self.health_every
        if isinstance(h, bool) or not isinstance(h, int) or h < 0:
            raise JobError(f"health_every must be a whole number >= 0 (0: off), got {h!r}")
        try:
            check_copy_gb(self.health_copy_gb)
        except ValueError as exc:
            raise JobError(str(exc)) from None
        if isinstance(self.grad_accum, bool) or not isinstance(self.grad_accum, int):
            raise JobError(f"grad_accum must be a whole number >= 1, got {self.grad_accum!r}")
        if self.grad_accum < 1:
            raise JobError(f"grad_accum must be a whole number >= 1, got {self.grad_accum!r}")
        if self.clip_grad_norm is not None and not (
            isinstance(self.clip_grad_norm, int | float) and self.clip_grad_norm > 0
        ):
            raise JobError(f"clip_grad_norm must be > 0, got {self.clip_grad_norm!r}")
        if self.checkpoint_minutes is not None and not (
            isinstance(self.checkpoint_minutes, int | float) and self.checkpoint_minutes > 0
        ):
            raise JobError(f"checkpoint_minutes must be > 0, got {self.checkpoint_minutes!r}")
        if isinstance(self.keep_last, bool) or not isinstance(self.keep_last, int):
            raise JobError(f"keep_last must be a whole number >= 0, got {self.keep_last!r}")
        if self.keep_last < 0:
            raise JobError(f"keep_last must be a whole number >= 0, got {self.keep_last!r}")
        if not (
            isinstance(self.snapshot_limit_gb, int | float)
            and not isinstance(self.snapshot_limit_gb, bool)
            and self.snapshot_limit_gb >= 0
        ):
            raise JobError(
                f"snapshot_limit_gb must be a number >= 0, got {self.snapshot_limit_gb!r}"
            )
        every = self.system_every
        if isinstance(every, bool) or not isinstance(every, int | float) or not every >= 0:
            raise JobError(f"system_every must be a number of seconds >= 0, got {every!r}")
        from optitui.trainer.core.amp import PRECISIONS

        if self.precision not in PRECISIONS:
            raise JobError(
                f"precision must be one of {', '.join(map(repr, PRECISIONS))}, "
                f"got {self.precision!r}"
            )
        from optitui.trainer.core.divergence import GuardPolicy

        try:
            GuardPolicy(
                self.on_divergence, self.rollback_lr_factor, self.rollback_skip, self.spike_factor
            ).validate()
        except (ValueError, TypeError) as exc:
            raise JobError(str(exc)) from None
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise JobError(f"seed must be an int, got {self.seed!r}")
        if _empty(self.train_data):
            raise JobError("train_data is empty: it yields no batches, nothing to train on")


def _empty(data: Any) -> bool:
    """A sized iterable of length 0 (a DataLoader over an empty dataset, ``[]``)."""
    try:
        return len(data) == 0
    except Exception:  # unsized (a generator) or a length that cannot be known
        return False
