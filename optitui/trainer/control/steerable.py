"""What a command may read and change of a run: the one interface commands are applied
through (:func:`optitui.trainer.control.commands.apply`).

A command edits the param groups (directly, through the lr control, or by a ramp over
the next steps), pauses or counts down a step budget, stops, saves and restores
checkpoints, and asks for a range test or a race that the loop runs at this boundary. The
:class:`~optitui.trainer.loop.trainer.Trainer` implements it, and so does the probe's
loop (a Trainer whose loop is the user's). Commands never see more of the loop than
this, so ``control`` never imports ``loop``.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from optitui.store.layout import RunPaths
from optitui.trainer.control.guard import Guard
from optitui.trainer.control.race import Race
from optitui.trainer.control.ramps import Ramp
from optitui.trainer.control.rangetest import RangeTest, Sweepable
from optitui.trainer.control.saver import Answer, Policy, Saver


class Steerable(Sweepable, Protocol):
    """A run a command can steer, at a step boundary. Groups, lr control, the state a
    snapshot holds, and the range test's own step come with :class:`Sweepable`."""

    paths: RunPaths
    #: how the model is sharded across ranks (FSDP), or None: no whole-state copies then
    sharded: str | None

    # -- hyperparameters: ramps over the next steps, an optimizer swap, freezing
    def start_ramp(self, ramp: Ramp) -> None: ...

    def cancel_ramp(self, group: int | None, field: str) -> None: ...

    def swap_optimizer(self, new: torch.optim.Optimizer) -> None: ...

    def params_changed(self) -> None: ...

    def publish_controls(self) -> None: ...

    # -- pause and the step budget (``step N``), stop: ``request_stop`` via Sweepable
    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def step_then_pause(self, n: int) -> None: ...

    def flush(self, check: bool = False) -> None: ...

    # -- checkpoints and the divergence guard
    saver: Saver | None
    policy: Policy
    guard: Guard

    @property
    def framework_checkpoints(self) -> bool: ...

    def save_checkpoint(
        self,
        reason: str,
        tag: str | None = None,
        answer: Answer | None = None,
        *,
        every_rank: bool = False,
    ) -> str: ...

    def rewind(self, snap: dict[str, Any], cid: str) -> None: ...

    def set_policy(self, policy: Policy) -> None: ...

    # -- the range test: asked for here, run by the loop after the command's answer
    pending_test: RangeTest | None
    range_tests: dict[str, RangeTest]

    # -- the race, likewise; only where the loop runs the job's own steps on its data
    own_steps: bool
    pending_race: Race | None
    races: dict[str, Race]
