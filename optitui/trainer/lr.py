"""Live lr edits that keep the scheduler's shape.

Each group carries a persistent multiplier m: its lr is schedule(t) * m. The
scheduler itself only ever sees the unscaled value (we swap it in around
``scheduler.step()``), so chainable schedulers that compute from
``group['lr']`` keep their own course; "set lr=X" picks m = X / schedule(t).
ReduceLROnPlateau has no base schedule: edits set the lr directly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from optitui.store.fields import FieldError


def read_lr(group: dict[str, Any]) -> float:
    lr = group["lr"]
    return float(lr) if isinstance(lr, torch.Tensor) else lr  # type: ignore[no-any-return]


def write_lr(group: dict[str, Any], value: float) -> None:
    lr = group["lr"]
    if isinstance(lr, torch.Tensor):
        lr.fill_(value)
    else:
        group["lr"] = value


class LrControl:
    """Owns every group's lr multiplier and steps the scheduler around it."""

    def __init__(self, optimizer: Optimizer, scheduler: Any | None) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.mult = [1.0 for _ in optimizer.param_groups]
        #: False while the user has detached the scheduler: the lr stays where it is put
        self.attached = True
        # the schedule's own value for groups with a multiplier, kept exactly
        # rather than recomputed as lr / m (which would drift by rounding)
        self.base: dict[int, float] = {}

    @property
    def scheduled(self) -> bool:
        """True when a scheduler computes the lr (a multiplier is needed to keep its shape)."""
        return (
            self.attached
            and self.scheduler is not None
            and not isinstance(self.scheduler, ReduceLROnPlateau)
        )

    def drives_momentum(self) -> str | None:
        """The scheduler cycling momentum/betas (OneCycleLR, CyclicLR), if one is attached."""
        if not self.attached or self.scheduler is None:
            return None
        stack = [self.scheduler]
        while stack:
            s = stack.pop()
            if getattr(s, "cycle_momentum", False):
                return type(s).__name__
            stack.extend(getattr(s, "_schedulers", []))
        return None

    def detach(self) -> None:
        """Stop stepping the scheduler; every lr stays where it is (multipliers fold in)."""
        self.attached = False
        self.base.clear()
        self.mult = [1.0 for _ in self.mult]

    def attach(self) -> None:
        """Step the scheduler again, from where it was detached, starting at the current lr."""
        self.attached = True

    def rebind(self, optimizer: Optimizer) -> None:
        """Follow a swapped optimizer (same groups, same order)."""
        self.optimizer = optimizer

    def set_multiplier(self, i: int, m: float) -> None:
        """Group i's lr becomes schedule(t) * m (scheduled groups only)."""
        base = self.unscaled(i)
        self._set_mult(i, base, m)
        write_lr(self._groups()[i], base * m)

    def _groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def unscaled(self, i: int) -> float:
        """The lr the schedule gives group i now (its lr when no multiplier is set)."""
        return self.base.get(i, read_lr(self._groups()[i]))

    def check_set(self, i: int, value: float) -> None:
        """Raise FieldError when lr=value cannot be expressed for group i."""
        if self.scheduled and self.unscaled(i) == 0.0 and value != 0.0:
            raise FieldError(
                "lr",
                value,
                "0 while the schedule is at lr 0 (a multiplier cannot lift it); "
                "detach the scheduler to set it directly",
            )

    def _set_mult(self, i: int, base: float, m: float) -> None:
        self.mult[i] = m
        if m == 1.0:
            self.base.pop(i, None)
        else:
            self.base[i] = base

    def set_lr(self, i: int, value: float) -> None:
        if self.scheduled:
            base = self.unscaled(i)
            if base != 0.0:
                self._set_mult(i, base, value / base)
        write_lr(self._groups()[i], value)

    def scale(self, i: int, factor: float) -> None:
        group = self._groups()[i]
        if self.scheduled:
            base = self.unscaled(i)
            self._set_mult(i, base, self.mult[i] * factor)
            write_lr(group, base * self.mult[i])
        else:
            write_lr(group, read_lr(group) * factor)

    def step_scheduler(self, metric: float | None = None) -> None:
        """``scheduler.step()`` with every group's multiplier taken out and put back."""
        sched = self.scheduler
        if sched is None or not self.attached:
            return
        if isinstance(sched, ReduceLROnPlateau):
            if metric is not None:
                sched.step(metric)
            return
        if not self.base:  # the common case: no multiplier, nothing to swap
            sched.step()
            return
        groups = self._groups()
        for i, base in self.base.items():
            write_lr(groups[i], base)
        sched.step()
        for i in self.base:
            self.base[i] = read_lr(groups[i])
            write_lr(groups[i], self.base[i] * self.mult[i])
