"""The scheduler a user's loop steps, seen through the probe's lr multipliers.

A probe does not step the scheduler: the user's loop (or the framework) does.
To keep a live lr edit in the schedule's shape, the probe swaps in a subclass
for that one scheduler instance whose ``step()`` shows the schedule the
unscaled lr and puts the multipliers back on after. Its ``state_dict`` stays
as it was; :meth:`HeldScheduler.release` restores the original class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from optitui.trainer.lr import read_lr, write_lr

if TYPE_CHECKING:
    from optitui.trainer.probe import Probe

Scheduler = LRScheduler | ReduceLROnPlateau


def check_scheduler(optimizer: Optimizer, scheduler: Any) -> None:
    """Raise unless ``scheduler`` is a torch scheduler over ``optimizer``'s groups (by the
    groups, not the optimizer's identity: frameworks wrap optimizers)."""
    if scheduler is None:
        return
    if not isinstance(scheduler, LRScheduler | ReduceLROnPlateau):
        raise TypeError(
            "scheduler must be a torch.optim.lr_scheduler scheduler, "
            f"got {type(scheduler).__name__}"
        )
    theirs = scheduler.optimizer.param_groups
    ours = optimizer.param_groups
    if len(theirs) != len(ours) or any(a is not b for a, b in zip(theirs, ours, strict=True)):
        raise ValueError("the scheduler drives another optimizer than the one watched")


class HeldScheduler:
    """Wraps ``scheduler.step`` for ``probe`` until :meth:`release`."""

    def __init__(self, probe: Probe, scheduler: Scheduler) -> None:
        self.probe, self.scheduler = probe, scheduler
        self.base = type(scheduler)
        base, held = self.base, self

        def step(sched: Any, *args: Any, **kwargs: Any) -> Any:
            return held.step(base.step, sched, *args, **kwargs)

        # a subclass for this one instance (its state_dict stays as it was)
        scheduler.__class__ = type(
            base.__name__,
            (base,),
            {"step": step, "__module__": base.__module__, "__qualname__": base.__qualname__},
        )

    def step(self, step: Callable[..., Any], sched: Any, *args: Any, **kwargs: Any) -> Any:
        """The user's ``scheduler.step()``: the schedule sees the unscaled lr, the
        multipliers go back on after. Skipped while detached or while a range test runs."""
        probe = self.probe
        t = probe.trainer
        if t is None or probe.closed:
            return step(sched, *args, **kwargs)
        lr = t.lr
        if probe.testing or not lr.attached:
            return None
        if isinstance(sched, ReduceLROnPlateau) or not lr.base:
            return step(sched, *args, **kwargs)
        groups = t.optimizer.param_groups
        for i, base in lr.base.items():
            write_lr(groups[i], base)
        out = step(sched, *args, **kwargs)
        for i in lr.base:
            lr.base[i] = read_lr(groups[i])
            write_lr(groups[i], lr.base[i] * lr.mult[i])
        return out

    def release(self) -> None:
        self.scheduler.__class__ = self.base
