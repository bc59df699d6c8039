"""Edits spread over the next N steps (warmup on demand), advanced at step boundaries.

An lr ramp under a scheduler moves the group's multiplier, so the schedule
keeps its shape during the ramp too. Intermediate values are convex
combinations of two valid values, so they satisfy the same interval bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optitui.trainer.core import hparams
from optitui.trainer.core.lr import read_lr
from optitui.trainer.core.training import Training


@dataclass
class Ramp:
    group: int
    field: str  # "lr" ramps the lr (its multiplier when scheduled); else a group field
    start: Any
    end: Any
    steps: int
    done: int = 0
    on_multiplier: bool = False

    def value(self) -> Any:
        if self.done >= self.steps:
            return self.end
        t = self.done / self.steps
        if isinstance(self.start, tuple | list):
            return tuple(a + (b - a) * t for a, b in zip(self.start, self.end, strict=True))
        v = self.start + (self.end - self.start) * t
        return round(v) if isinstance(self.end, int) else v


def start_lr_ramp(trainer: Training, group: int, target_lr: float, steps: int) -> Ramp:
    lr = trainer.lr
    if lr.follows(group):
        base = lr.unscaled(group)
        return Ramp(
            group,
            "lr",
            lr.mult[group],
            target_lr / base if base else 1.0,
            steps,
            on_multiplier=True,
        )
    return Ramp(group, "lr", read_lr(trainer.optimizer.param_groups[group]), target_lr, steps)


def start_field_ramp(trainer: Training, group: int, field: str, target: Any, steps: int) -> Ramp:
    current = hparams.plain(trainer.optimizer.param_groups[group][field])
    if isinstance(target, bool) or isinstance(current, bool):
        raise ValueError(f"{field}: true/false cannot be ramped; set it without --ramp")
    start = tuple(current) if isinstance(current, list) else current
    return Ramp(group, field, start, target, steps)


def advance(trainer: Training, ramp: Ramp) -> bool:
    """Apply the ramp's next value; True when it has reached its end."""
    ramp.done += 1
    v = ramp.value()
    if ramp.field == "lr":
        if ramp.on_multiplier and trainer.lr.follows(ramp.group):
            trainer.lr.set_multiplier(ramp.group, v)
        else:
            trainer.lr.set_lr(ramp.group, v)
    else:
        group = trainer.optimizer.param_groups[ramp.group]
        hparams.assign(trainer.optimizer, group, ramp.field, v)
    return ramp.done >= ramp.steps
