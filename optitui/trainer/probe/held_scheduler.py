"""The scheduler a user's loop steps, seen through the probe's lr multipliers.

A probe does not step the scheduler: the user's loop (or the framework) does.
To keep a live lr edit in the schedule's shape, the probe swaps in a subclass
for that one scheduler instance whose ``step()`` shows the schedule the
unscaled lr and puts the multipliers back on after. Its ``state_dict`` stays
as it was; :meth:`HeldScheduler.release` restores the original class.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from optitui.trainer.probe.probing import Probing

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


def _drives(sched: Any, optimizer: Optimizer) -> bool:
    theirs = getattr(getattr(sched, "optimizer", None), "param_groups", None)
    ours = optimizer.param_groups
    return (
        isinstance(theirs, list)
        and len(theirs) == len(ours)
        and all(a is b for a, b in zip(theirs, ours, strict=True))
    )


def find_scheduler(optimizer: Optimizer) -> Scheduler | None:
    """The torch scheduler driving ``optimizer``'s groups, found among the objects that
    refer to it; None when there is none, or several that are not nested in one another.

    A scheduler left unheld would read the scaled lr and compound an edit at every step
    (ExponentialLR: lr * gamma), so a probe holds the one it finds. It looks once, when
    the probe is made."""
    found: list[Any] = []
    for ref in gc.get_referrers(optimizer):
        owners = [ref]
        if isinstance(ref, dict):  # an instance's __dict__ (Python before 3.11)
            owners = [o for o in gc.get_referrers(ref) if getattr(o, "__dict__", None) is ref]
        for o in owners:
            is_sched = isinstance(o, LRScheduler | ReduceLROnPlateau)
            if is_sched and _drives(o, optimizer) and all(o is not f for f in found):
                found.append(o)
    inner = {id(c) for s in found for c in getattr(s, "_schedulers", [])}
    outer = [s for s in found if id(s) not in inner]
    return outer[0] if len(outer) == 1 else None


class HeldScheduler:
    """Wraps ``scheduler.step`` for ``probe`` until :meth:`release`."""

    def __init__(self, probe: Probing, scheduler: Scheduler) -> None:
        self.probe, self.scheduler = probe, scheduler
        self.base = type(scheduler)
        base, held = self.base, self

        def step(sched: Any, *args: Any, **kwargs: Any) -> Any:
            return held.step(base.step, sched, *args, **kwargs)

        def get_last_lr(sched: Any) -> list[Any]:
            return held.last_lr(base.get_last_lr, sched)

        # a subclass for this one instance (its state_dict stays as it was)
        scheduler.__class__ = type(
            base.__name__,
            (base,),
            {
                "step": step,
                "get_last_lr": get_last_lr,
                "__module__": base.__module__,
                "__qualname__": base.__qualname__,
            },
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
        return lr.around_step(lambda: step(sched, *args, **kwargs))

    def last_lr(self, get: Callable[[Any], list[Any]], sched: Any) -> list[Any]:
        """``scheduler.get_last_lr()``: the lr applied now, multipliers included, so the
        framework's own logs (HF's ``log_history``, what it reports to) agree with optitui.
        Its own value is the unscaled schedule."""
        if self.probe.trainer is None or self.probe.closed:
            return get(sched)
        return [g["lr"] for g in sched.optimizer.param_groups]

    def release(self) -> None:
        self.scheduler.__class__ = self.base
