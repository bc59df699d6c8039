"""The trainer behind a probe: commands, records and checkpoints, with no loop of its own.

A :class:`LoopTrainer` is the :class:`~optitui.trainer.loop.trainer.Trainer` a
:class:`~optitui.trainer.probe.watch.Probe` drives from the user's loop. It differs
where the loop is not its own: it never fetches a batch, the range test runs
over the loop's next steps, and a framework (Lightning, HF) may own the
checkpoint format through a :class:`CheckpointBackend`.

Under torch.distributed every rank has one. Rank 0 serves the store; the ranks
meet every ``sync_every`` steps at the probe's step boundary, as the trainer's
own loop does. A framework's save is collective (Lightning's has a barrier, the
HF Trainer writes per-rank RNG files), so a periodic save is agreed at a sync
and taken by every rank at the same step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from optitui.store.commands import Command
from optitui.store.layout import RunPaths
from optitui.store.records import Event, Outcome
from optitui.trainer.control import answers, rangetest, surgery
from optitui.trainer.control.saver import Answer
from optitui.trainer.core import checkpoint
from optitui.trainer.core.dist import DistInfo
from optitui.trainer.core.job import Job
from optitui.trainer.loop.trainer import Trainer
from optitui.trainer.probe.probing import CheckpointBackend as CheckpointBackend
from optitui.trainer.probe.probing import Probing

#: who holds the optimizer object a probe watches, by the probe's mode
HOLDERS = {
    "lightning": "the Lightning Trainer holds the optimizer",
    "transformers": "the HF Trainer holds the optimizer",
    "zero-code": "the script holds its optimizer object",
}


def user_loop(model: nn.Module, batch: Any) -> torch.Tensor:
    raise RuntimeError("the probe's loop is the user's; it never computes a loss itself")


class LoopsData:
    """A probe's Job's data: the user's loop has it, so there is nothing to iterate here."""

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class ParamsOnly(nn.Module):
    """The optimizer's tensors as a module, for checkpoints when no model was given."""

    def __init__(self, optimizer: Optimizer) -> None:
        super().__init__()
        for i, g in enumerate(optimizer.param_groups):
            for j, p in enumerate(g["params"]):
                if isinstance(p, nn.Parameter):
                    self.register_parameter(f"group{i}_param{j}", p)
                else:  # a plain leaf tensor: kept (and restored in place) as a buffer
                    self.register_buffer(f"group{i}_param{j}", p)


def loops_job(
    optimizer: Optimizer,
    model: nn.Module | None,
    on_divergence: str | None,
    sync_every: int | None,
    health_every: int = 16,
    health_copy_gb: float | None = None,
) -> Job:
    """The Job behind a probe: the loop's model (or its optimizer's tensors) and optimizer,
    no data and no loss of its own."""
    job = Job(
        model=model if model is not None else ParamsOnly(optimizer),
        optimizer=optimizer,
        train_data=LoopsData(),
        step_fn=user_loop,
        on_divergence=on_divergence or "pause",
        ddp=False,  # the loop's model is the user's (wrapped by them, or not)
        health_every=health_every,
    )
    if sync_every is not None:
        job.sync_every = sync_every
    if health_copy_gb is not None:
        job.health_copy_gb = health_copy_gb
    job.validate()
    return job


class LoopTrainer(Trainer):
    """The trainer behind a probe: commands, records and checkpoints, no loop of its own."""

    own_steps = False  # the user's loop owns the steps and the data: no race

    def __init__(
        self,
        probe: Probing,
        job: Job,
        device: torch.device,
        paths: RunPaths,
        *,
        meta: dict[str, Any],
        flush_every: int,
        flush_seconds: float,
        max_steps: int | None,
        dist_info: DistInfo | None,
    ) -> None:
        self.probe = probe
        #: a periodic save due under torch.distributed with a framework backend: the
        #: ranks agree on it at the next sync and save together
        self._periodic_due = False
        super().__init__(
            job,
            device,
            paths,
            meta=meta,
            flush_every=flush_every,
            flush_seconds=flush_seconds,
            max_steps=max_steps,
            dist_info=dist_info,
        )

    def run(self) -> str:
        raise RuntimeError("a probe's loop is the user's: call probe.step(loss) in it")

    @property
    def framework_checkpoints(self) -> bool:
        return self.probe.backend is not None

    def _start(self) -> None:
        # Trainer._start puts the model in train mode; the user's loop decides that here
        modes = [m.training for m in self.model.modules()]
        super()._start()
        for m, mode in zip(self.model.modules(), modes, strict=True):
            m.training = mode
        self.health.arm(self.step, self.optimizer)  # hooks around the loop's optimizer.step()

    def _after_step(self) -> None:
        super()._after_step()
        # the loop's next optimizer.step() is measured when it is on the interval
        self.health.arm(self.step, self.optimizer)

    def _set_state(self, state: str, message: str | None = None) -> None:
        if self.probe.testing and state in ("running", "paused"):
            state, message = "lr-find", None  # the test goes on over the loop's next steps
        super()._set_state(state, message)

    def next_batch(self) -> Any:
        return None  # a divergence rollback cannot skip batches of a loop it does not own

    def swap_optimizer(self, new: Optimizer) -> None:
        holder = HOLDERS.get(self.probe.mode, "your loop holds its optimizer object")
        raise surgery.SurgeryError(f"swap-optimizer needs a script with setup(): {holder}")

    def run_range_test(self, test: rangetest.RangeTest) -> rangetest.RangeTest:
        self.pending_test = None
        self.probe.start_test(test)
        return test

    # -- checkpoints -----------------------------------------------------------------
    def save_checkpoint(
        self,
        reason: str,
        tag: str | None = None,
        answer: Answer | None = None,
        *,
        every_rank: bool = False,
    ) -> str:
        if self.probe.backend is None:
            return super().save_checkpoint(reason, tag, answer, every_rank=every_rank)
        if reason == "periodic" and self.dist is not None:
            self._periodic_due = True  # taken by every rank at the next sync
            self._ckpt_at = float("inf")
            return ""
        return self._save_with_backend(reason, tag, answer)

    def _save_with_backend(self, reason: str, tag: str | None, answer: Answer | None = None) -> str:
        backend = self.probe.backend
        assert backend is not None
        cid = backend.save(reason, tag, answer)
        if self.saver is not None:
            self.saver.counted(reason)
            self._ckpt_at = self.saver.next_due_step()
        return cid

    def _sync(self) -> None:
        super()._sync()
        if self.probe.backend is not None and self.agree(self._periodic_due):
            self._periodic_due = False
            self._save_with_backend("periodic", None)

    def _for_every_rank(self, cmd: Command) -> Command:
        backend = self.probe.backend
        if cmd.kind != "restore" or backend is None:
            return super()._for_every_rank(cmd)
        try:  # rank 0 picks the checkpoint; every rank loads that one
            ref = backend.find(str(cmd.args["id"])).stem
        except checkpoint.CheckpointError:
            return cmd  # every rank rejects it the same way
        return Command(cmd.id, cmd.kind, {**cmd.args, "id": ref}, cmd.raw)

    # -- commands --------------------------------------------------------------------
    def _apply_commands(self, batch: deque[Command] | None = None) -> None:
        """As the trainer does, except restore when a framework owns the checkpoints:
        the backend loads those, in command order with the rest."""
        if self.probe.backend is None:
            super()._apply_commands(batch)
            return
        queue = self.commands if batch is None else batch
        part = deque[Command]()
        while queue:
            cmd = queue.popleft()
            if cmd.kind != "restore":
                part.append(cmd)
                continue
            super()._apply_commands(part)  # what came before it is applied first
            part = deque()
            self._restore_from_backend(cmd)
        super()._apply_commands(part)

    def _restore_from_backend(self, cmd: Command) -> None:
        backend = self.probe.backend
        assert backend is not None
        try:
            self.flush()
            old = self.step
            cid = backend.restore(str(cmd.args["id"]))
        except Exception as exc:  # every command is answered; the backends check first
            if not isinstance(exc, checkpoint.CheckpointError):
                exc = checkpoint.CheckpointError(f"restore failed: {type(exc).__name__}: {exc}")
            for r in answers.records(cmd, self.step, False, str(exc)):
                self.recorder.put(r)
            return
        # what changed is on record before the answer, as the trainer does it
        self.published.publish_groups()
        self.publish_controls()
        note = f"loaded {cid}; the loop goes on from step {old}"
        self.recorder.put(Outcome(cmd.id, cmd.kind, cmd.raw, True, self.step, note))
        self.recorder.put(
            Event(
                self.step,
                "checkpoint",
                f"restored {cid} (model, optimizer, scheduler); the loop goes on from step {old}",
                {"marker": "restore", "id": cid, "from_step": old, "to_step": self.step},
            )
        )

    def leave_group(self) -> None:
        """Stop meeting the other ranks (this one failed, or was interrupted alone):
        what is left is flushed locally instead of waiting on peers that may never come."""
        self.dist = None
