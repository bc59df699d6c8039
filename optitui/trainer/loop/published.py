"""What viewers see of the job's state besides the per-step metrics: the param groups'
values (a snapshot on every change), the run-wide controls, and the status.

Every change of the job's state is published when it happens: an edit, a restore or
rollback (new step, new values), a ramp's end, the script's first lr write. Values
that move on their own (momentum cycled by OneCycleLR, a field being ramped) are
compared at flush time and published when they moved, at most every
:data:`MOVED_EVERY_S` seconds, so a long run's store does not fill with snapshots.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from optitui.store.records import Event, GroupSnapshot, MetaUpdate, StatusUpdate
from optitui.trainer.control.guard import Guard
from optitui.trainer.control.ramps import Ramp
from optitui.trainer.control.saver import Policy
from optitui.trainer.core import hparams
from optitui.trainer.core.hparams import group_label
from optitui.trainer.core.training import Training

MOVED_EVERY_S = 2.0


class Shown(Training, Protocol):
    """What viewers are shown of a run besides its groups: state, controls, ramps."""

    state: str
    policy: Policy
    guard: Guard

    @property
    def state_message(self) -> str | None: ...

    @property
    def ramps(self) -> list[Ramp]: ...


class Published:
    """Publishes one trainer's groups, controls and status to its recorder."""

    def __init__(self, trainer: Shown) -> None:
        self.t = trainer
        self._values: list[dict[str, Any]] | None = None  # the values last published
        self._at = 0.0

    def groups(self) -> list[dict[str, Any]]:
        """Every group's values and editable fields, as plain data (syncs on tensor lrs)."""
        t = self.t
        out = []
        for i, g in enumerate(t.optimizer.param_groups):
            out.append(
                {
                    "index": i,
                    "name": group_label(g, i),
                    "params": sum(int(p.numel()) for p in g["params"]),
                    "frozen": all(not p.requires_grad for p in g["params"]),
                    "lr_multiplier": t.lr.mult[i],
                    "lr_by_script": i in t.lr.script,
                    "ramping": sorted(r.field for r in t.ramps if r.group == i),
                    "values": {
                        k: hparams.plain(v) for k, v in g.items() if k not in hparams.HIDDEN
                    },
                    "fields": {
                        k: s.to_json() for k, s in hparams.group_fields(t.optimizer, g).items()
                    },
                }
            )
        return out

    def publish_groups(self) -> None:
        """A group snapshot now (viewers take the newest)."""
        snap = self.groups()
        self._values = [g["values"] for g in snap]
        self._at = time.monotonic()
        self.t.recorder.put(GroupSnapshot(self.t.step, snap))

    def publish_if_moved(self) -> None:
        """At a flush: publish when values moved on their own (a momentum cycle, a field
        ramp) since the last snapshot. The lr is in every step's metrics already."""
        t = self.t
        moving = t.lr.drives_momentum() or any(r.field != "lr" for r in t.ramps)
        if not moving or time.monotonic() - self._at < MOVED_EVERY_S:
            return
        now = [
            {k: hparams.plain(v) for k, v in g.items() if k not in hparams.HIDDEN and k != "lr"}
            for g in t.optimizer.param_groups
        ]
        then = [{k: v for k, v in g.items() if k != "lr"} for g in self._values or []]
        if now != then:
            self.publish_groups()

    def controls(self) -> dict[str, Any]:
        """Run-wide settings shown beside the group table."""
        t = self.t
        sched = t.lr.scheduler
        return {
            "scheduler": None if sched is None else type(sched).__name__,
            "scheduler_attached": t.lr.attached,
            "lr_by_script": bool(t.lr.script),
            "cycles_momentum": t.lr.drives_momentum(),
            "lookahead": None if t.lookahead is None else t.lookahead.describe(),
            "clip": t.clip,
            "optimizer": type(t.optimizer).__name__,
            "checkpoints": t.policy.describe(),
            "divergence": t.guard.policy.describe(),
        }

    def publish_controls(self) -> None:
        self.t.recorder.put(MetaUpdate({"controls": self.controls()}))

    def state_changed(self) -> None:
        """After a restore or rollback: new step, new values, maybe new controls; a viewer
        sees all of it now, also while the run is paused."""
        t = self.t
        self.publish_groups()
        self.publish_controls()
        t.recorder.put(StatusUpdate(t.state, t.step, t.epoch, message=t.state_message))

    def lr_changed(self, i: int, first: bool) -> None:
        """Group i's lr changed at an optimizer step: the script wrote it for the first
        time, or a "set lr" took its multiplier from where the schedule moved. Viewers
        see the new values at once."""
        t = self.t
        self.publish_groups()
        if not first:
            return
        name = group_label(t.optimizer.param_groups[i], i)
        m = t.lr.mult[i]
        kept = f"; x{m:.4g} from earlier edits stays on top" if m != 1.0 else ""
        t.recorder.put(
            Event(
                t.step,
                "info",
                f"group {name}: the script writes its lr itself; edits are multipliers on "
                f"the script's values{kept}",
                {"lr_by_script": i},
            )
        )
        self.publish_controls()
