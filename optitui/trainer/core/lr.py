"""Live lr edits that keep the schedule's shape, whoever computes the schedule.

Each group carries a persistent multiplier m: its lr is schedule(t) * m. The
schedule is either a torch scheduler that optitui steps (or holds, in a probe),
or the script itself writing ``param_group['lr']`` every step (nanoGPT's
``lr = get_lr(it)``): right before each optimizer step, a group whose lr is not
what optitui left there was written from outside; that value becomes the
schedule's value and the multiplier goes back on top. A torch scheduler only
ever sees the unscaled value (we swap it in around ``scheduler.step()``), so
chainable schedulers that compute from ``group['lr']`` keep their own course.
"set lr=X" picks m = X / schedule(t). ReduceLROnPlateau has no base schedule:
edits set the lr directly.

Noticing an outside write costs an identity check per group per step (the
float object optitui left is still there, or it is not): no read from the
device, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from optitui.store.fields import FieldError
from optitui.trainer.core.lr_record import same_lrs

Lr = float | torch.Tensor


def as_float(value: Lr) -> float:
    return float(value) if isinstance(value, torch.Tensor) else value


def read_lr(group: dict[str, Any]) -> float:
    return as_float(group["lr"])


def write_lr(group: dict[str, Any], value: Lr) -> None:
    lr = group["lr"]
    if isinstance(lr, torch.Tensor):
        if isinstance(value, torch.Tensor):
            lr.copy_(value)
        else:
            lr.fill_(value)
    else:
        group["lr"] = value


class LrControl:
    """Owns every group's lr multiplier and steps the scheduler around it."""

    def __init__(self, optimizer: Optimizer, scheduler: Any | None) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.mult = [1.0 for _ in optimizer.param_groups]
        #: False while the user has detached the schedule: the lr stays where it is put
        self.attached = True
        # the schedule's own value for groups with a multiplier, kept exactly
        # rather than recomputed as lr / m (which would drift by rounding)
        self.base: dict[int, Lr] = {}
        #: groups whose lr the script writes itself (found at an optimizer step)
        self.script: set[int] = set()
        #: each group's lr as something other than an edit last set it: an edit made
        #: before the script's first write carries over as a multiplier on it
        self.unedited: list[Lr] = [g["lr"] for g in optimizer.param_groups]
        #: told (group, first write by the script) when what viewers show changed at a
        #: step: the script's first write to a group, or the multiplier a "set lr" took
        self.on_change: Callable[[int, bool], None] | None = None
        self._rebase: set[int] = set()  # attached again: continue from the current lr
        #: "set lr=X" on a group that follows a schedule: the next step uses X, whatever
        #: the schedule moved to before it (a probe's scheduler steps after the boundary,
        #: a script writes its next value), and the multiplier is taken from there
        self._pending: dict[int, float] = {}
        self.left: list[Any] = []
        self.remember()

    # -- what optitui left, and what changed it -------------------------------------------
    def remember(self) -> None:
        """The groups' lrs now are optitui's (after a scheduler step, a restore, a swap)."""
        self.left = [g["lr"] for g in self._groups()]

    def _write(self, i: int, value: Lr) -> None:
        group = self._groups()[i]
        write_lr(group, value)
        self.left[i] = group["lr"]

    def notice_writes(self) -> None:
        """Right before an optimizer step: take what the script wrote into any group's lr
        as the schedule's value, and put the multiplier back on top."""
        left, groups = self.left, self.optimizer.param_groups
        if same_lrs(groups, left) and not self._pending:  # nobody wrote: the common case
            return
        for i, g in enumerate(groups):
            v = g["lr"]
            if v is left[i]:  # nobody wrote: the common case
                continue
            if type(v) is float and (v == left[i] or v == self._applied(i)):
                left[i] = v  # the same value again, or what optitui would write anyway
                continue
            self._outside(i, v)
        if self._pending:  # the schedule moved without a write from outside (or not)
            for i, x in self._pending.items():
                self._settle(i, x)
            self._pending.clear()

    def _settle(self, i: int, x: float) -> None:
        """set lr=X, right before the next step: X now, and the multiplier that gives it."""
        base = self.unscaled(i)
        if base == 0.0 or not self.follows(i):
            return
        m = x / base
        if m == self.mult[i]:
            return  # nothing moved since the edit (the trainer's own loop)
        self._set_mult(i, base, m)
        self._write(i, x)
        if self.on_change is not None:
            self.on_change(i, False)

    def _applied(self, i: int) -> float | None:
        base = self.base.get(i)
        return base * self.mult[i] if type(base) is float else None

    def _outside(self, i: int, v: Lr) -> None:
        first = i not in self.script
        if not self.attached:  # detached: the lr stays where it was put
            self._write(i, self.left[i])
            return
        was = self.left[i]
        settled = i in self._pending
        if settled:  # set lr=X: X now, and the multiplier that gives it
            x = self._pending.pop(i)
            self.mult[i] = x / as_float(v) if as_float(v) else self.mult[i]
        elif i in self._rebase:  # attached again: the multiplier continues from the lr now
            self._rebase.discard(i)
            self.mult[i] = as_float(was) / as_float(v) if as_float(v) else 1.0
        elif first and not self.follows(i):  # an earlier edit becomes a multiplier
            u = as_float(self.unedited[i])
            self.mult[i] = as_float(was) / u if u else 1.0
        self.script.add(i)
        self.unedited[i] = v
        m = self.mult[i]
        if m == 1.0:
            self.base.pop(i, None)
            self.left[i] = v
        elif isinstance(v, torch.Tensor):  # scaled on its device: nothing is read
            self.base[i] = v.detach().clone()
            v.mul_(m)
            self.left[i] = v
        else:
            self.base[i] = v
            self._write(i, v * m)
        if (first or settled) and self.on_change is not None:
            self.on_change(i, first)

    # -- who computes the schedule --------------------------------------------------------
    def follows(self, i: int) -> bool:
        """Group i's lr follows a schedule (a scheduler or the script): edits are
        multipliers on it."""
        if not self.attached:
            return False
        sched = self.scheduler
        return i in self.script or (sched is not None and not isinstance(sched, ReduceLROnPlateau))

    @property
    def scheduled(self) -> bool:
        """True when a schedule computes every group's lr."""
        return all(self.follows(i) for i in range(len(self.mult)))

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
        """Stop following the schedule; every lr stays where it is (multipliers fold in)."""
        self.attached = False
        self.base.clear()
        self.mult = [1.0 for _ in self.mult]

    def attach(self) -> None:
        """Follow the schedule again, from where it was detached, starting at the current
        lr (a script's next value is taken relative to the lr now)."""
        self.attached = True
        self._rebase = set(self.script)

    def rebind(self, optimizer: Optimizer) -> None:
        """Follow a swapped optimizer (same groups, same order)."""
        self.optimizer = optimizer
        self.remember()

    # -- edits ----------------------------------------------------------------------------
    def set_multiplier(self, i: int, m: float) -> None:
        """Group i's lr becomes schedule(t) * m (groups that follow a schedule only)."""
        base = self.unscaled(i)
        self._set_mult(i, base, m)
        self._write(i, base * m)

    def _groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def unscaled(self, i: int) -> float:
        """The lr the schedule gives group i now (its lr when no multiplier is set)."""
        return as_float(self.base.get(i, self._groups()[i]["lr"]))

    def check_set(self, i: int, value: float) -> None:
        """Raise FieldError when lr=value cannot be expressed for group i."""
        if self.follows(i) and self.unscaled(i) == 0.0 and value != 0.0:
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
        if self.follows(i):
            base = self.unscaled(i)
            if base != 0.0:
                self._set_mult(i, base, value / base)
            self._pending[i] = value
        self._write(i, value)

    def scale(self, i: int, factor: float) -> None:
        if self.follows(i):
            base = self.unscaled(i)
            self._set_mult(i, base, self.mult[i] * factor)
            self._write(i, base * self.mult[i])
        else:
            self._write(i, read_lr(self._groups()[i]) * factor)

    # -- the scheduler ----------------------------------------------------------------------
    def around_step(self, step: Callable[[], Any]) -> Any:
        """Call a scheduler's ``step``: it sees every group's unscaled lr, the
        multipliers go back on after, and what it wrote is optitui's."""
        if not self.base:  # the common case: no multiplier, nothing to swap
            out = step()
        else:
            groups = self._groups()
            for i, base in self.base.items():
                write_lr(groups[i], base)
            out = step()
            for i in self.base:
                self.base[i] = read_lr(groups[i])
                write_lr(groups[i], self.base[i] * self.mult[i])
        for i, g in enumerate(self._groups()):
            if not self.follows(i):  # a plateau's cut is nobody's edit
                self.unedited[i] = g["lr"]
        self.remember()
        return out

    def step_scheduler(self, metric: float | None = None) -> None:
        """``scheduler.step()`` with every group's multiplier taken out and put back."""
        sched = self.scheduler
        if sched is None or not self.attached:
            return
        if isinstance(sched, ReduceLROnPlateau):
            if metric is not None:
                self.around_step(lambda: sched.step(metric))
            return
        self.around_step(sched.step)

    # -- saved with the run -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Plain values for checkpoints and snapshots."""
        return {
            "mult": list(self.mult),
            "base": {i: as_float(b) for i, b in self.base.items()},
            "attached": self.attached,
            "script": sorted(self.script),
            "unedited": [as_float(u) for u in self.unedited],
        }

    def load_state(self, saved: dict[str, Any] | None) -> None:
        """Put back :meth:`state` (None or another shape: no multipliers), and take the
        groups' lrs now as optitui's."""
        n = len(self.mult)
        if not isinstance(saved, dict) or len(saved.get("mult", [])) != n:
            self.mult, self.base = [1.0] * n, {}
        else:
            self.mult = [float(m) for m in saved["mult"]]
            self.base = {int(k): float(v) for k, v in saved.get("base", {}).items()}
            self.attached = bool(saved.get("attached", True))
            self.script = {int(i) for i in saved.get("script", [])}
            unedited = saved.get("unedited")
            if isinstance(unedited, list) and len(unedited) == n:
                self.unedited = [float(u) for u in unedited]
        self._rebase.clear()
        self._pending.clear()
        self.remember()
