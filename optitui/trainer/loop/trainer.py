"""The training loop, top to bottom in :meth:`Trainer.run`: take commands at the step
boundary, fetch a batch, step, record.

The pieces it stands on, each its own module: the run's state and what commands may
change of it (:mod:`~optitui.trainer.loop.steering`, the
:class:`~optitui.trainer.control.steerable.Steerable` that commands are applied
through), and the step with its records (:mod:`~optitui.trainer.loop.step`). Pending
commands are noticed by checking a deque; under torch.distributed the ranks meet every
``sync_every`` steps and apply rank 0's commands at the same step.
"""

from __future__ import annotations

import random
import time
import traceback
from collections import deque

import torch

from optitui.store.commands import Command
from optitui.store.records import Event, Outcome, StatusUpdate
from optitui.store.supervise import BackgroundFailure
from optitui.trainer.control import answers as answer
from optitui.trainer.control import commands as control
from optitui.trainer.control import race, rangetest
from optitui.trainer.control.saver import Saver
from optitui.trainer.core import checkpoint, dist, footprint, state
from optitui.trainer.core.device import is_out_of_memory
from optitui.trainer.loop.step import EndOfData, Stepping


class RankOutOfMemory(RuntimeError):
    """Out of memory in a step under torch.distributed: the run ends on every rank."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


class Trainer(Stepping):
    """Runs a :class:`Job` and serves its run store. Use :meth:`run` once."""

    def run(self) -> str:
        """Train until max steps/epochs, a stop command, or an error. Returns the end state."""
        self._start()
        final, message = "finished", None
        try:
            while True:
                self._take_commands()  # the boundary: ramps advance, commands apply
                if self._stop_reason is not None:
                    final, message = "stopped", self._stop_reason
                    break
                if self.paused:
                    self._wait_while_paused()
                    continue
                if self.max_steps is not None and self.step >= self.max_steps:
                    message = f"{self.max_steps} steps done"
                    break
                if self._step_survived():  # fetch a batch, forward, backward, step
                    self._after_step()  # count it; save, validate and record when due
        except EndOfData as end:
            message = str(end)
        except BaseException as exc:
            final = "failed"
            message = f"{type(exc).__name__}: {exc}"
            self.recorder.put(
                Event(self.step, "error", message, {"traceback": traceback.format_exc()})
            )
            if isinstance(exc, Exception) and not isinstance(exc, RankOutOfMemory):
                self._save_on_failure()  # (after an OOM the step may be half applied)
            raise
        finally:
            self._finish(final, message)
        return final

    def _step_survived(self) -> bool:
        """One training step; False when it ran out of device memory and was dropped (the
        run pauses with the figures). Under torch.distributed the run ends instead."""
        try:
            self._train_step()
        except RuntimeError as exc:  # torch.OutOfMemoryError is one too
            if not is_out_of_memory(exc):
                raise
            if self.dist is not None and self.dist.world > 1:
                # the peers wait in this step's collectives: no rank can drop it
                raise RankOutOfMemory(self._memory_message(exc)) from exc
            self._out_of_memory(exc)
            return False
        return True

    # -- the step boundary: commands -----------------------------------------
    def _take_commands(self) -> None:
        """At a step boundary: advance the ramps, then apply what was sent; under
        torch.distributed only when the ranks meet, so all apply it at one step."""
        if self.supervisor.failed is not None:  # a background thread could not go on
            raise BackgroundFailure(self.supervisor.failed)
        if self._ramps:
            self._advance_ramps()
        if self.dist is None:
            if self.commands:
                self._apply_commands()
        elif self.step >= self._sync_at:
            self._sync()

    def _apply_commands(self, batch: deque[Command] | None = None) -> None:
        """Apply ``batch`` (else every queued command) in order, and answer each one."""
        queue = self.commands if batch is None else batch
        changed = False
        answers: list[Outcome | Event] = []
        while queue:
            cmd: Command = queue.popleft()
            try:
                done = control.apply(self, cmd)
            except control.Rejection as exc:
                answers += answer.records(cmd, self.step, False, str(exc))
                continue
            if isinstance(done, control.Later):  # answered once its effect exists
                continue
            changed |= done.changed
            answers += answer.records(cmd, self.step, True, done.note)
        # what changed is on record before the answers: a viewer that sees "applied"
        # finds the new values and state already there
        if changed:
            self.published.publish_groups()
        if self._paused and not self._budget:
            self._set_state("paused", self.pause_message)
        else:
            self._set_state("running")
        for record in answers:
            self.recorder.put(record)
        if self.pending_race is not None:  # after its ack, before training goes on
            self.run_race(self.pending_race)
        if self.pending_test is not None:
            self.run_range_test(self.pending_test)
            self._set_state(
                "paused" if self._paused and not self._budget else "running",
                self.pause_message if self._paused else None,
            )

    def run_range_test(self, test: rangetest.RangeTest) -> rangetest.RangeTest:
        self.pending_test = None
        self.flush()
        self._set_state("lr-find")
        rangetest.run(self, test)
        self.range_tests[test.id] = test
        self._last_flush = (time.time(), self.step, self._samples)
        return test

    def run_race(self, r: race.Race) -> race.Race:
        """Run a race now (its command answered), then train on as before."""
        self.pending_race = None
        self.flush()
        self._set_state("race")
        race.run(self, r, control.edit)
        self.races[r.id] = r
        self._last_flush = (time.time(), self.step, self._samples)
        self.published.publish_groups()  # the values as they are again
        self.publish_controls()
        paused = self._paused and not self._budget
        self._set_state("paused" if paused else "running", self.pause_message if paused else None)
        return r

    def _wait_while_paused(self) -> None:
        self.flush()
        self._set_state("paused", self.pause_message)
        if self.leader:
            self.pump.arrived.wait(0.5)
            self.pump.arrived.clear()
        if self.dist is not None:
            self._sync()  # the other ranks wait here for rank 0's next word

    # -- start and end -------------------------------------------------------
    def _start(self) -> None:
        if self.job.seed is not None:
            seed_everything(self.job.seed)
        self.model.train()
        self.recorder.start()
        self.machine.start()
        leftovers = checkpoint.cleanup(self.paths.checkpoints)
        if leftovers:
            self.recorder.put(
                Event(
                    0,
                    "warning",
                    "removed the remains of an interrupted "
                    f"checkpoint write: {', '.join(leftovers)}",
                )
            )
        self.saver = Saver(self, self.policy) if self.leader else None
        if self.resume_from is not None:
            snap, source = self.resume_from
            state.restore(self, snap)
            self.recorder.put(
                Event(
                    self.step,
                    "checkpoint",
                    f"resumed from {source} at step {self.step}",
                    {"marker": "restore", "to_step": self.step},
                )
            )
        self.expected_non_finite = checkpoint.expected_non_finite(self.model)
        self.lr.remember()  # the lrs now are where the run starts from
        self._ckpt_at = float("inf") if self.saver is None else self.saver.next_due_step()
        self.published.publish_groups()
        self.publish_controls()
        if self.sharded is not None:
            self._without_whole_state()
        self.guard.announce()  # what a rollback costs here, or where it goes back to
        sampled = self.health.sampled(self.optimizer)
        if sampled is not None:
            self.recorder.put(Event(self.step, "info", sampled))
        p = self.policy
        if self.dist is not None and self.dist.world > 1 and (p.every or p.minutes):
            size = footprint.measure(self.model, self.optimizer)
            self.recorder.put(
                Event(
                    self.step,
                    "info",
                    f"each periodic checkpoint copies {size.describe()} on rank 0, while the "
                    "other ranks wait in the next collective: keep --dist-timeout above that",
                )
            )
        self.pump.take_now()  # commands sent before the job started apply at step 0
        self.pump.start()
        self._last_flush = (time.time(), self.step, 0)
        self._set_state("running")

    def _without_whole_state(self) -> None:
        """A sharded model (FSDP): turn off what the Job asked for that copies the whole
        state on rank 0, and say so."""
        off = []
        p = self.policy
        if not self.framework_checkpoints and (p.every or p.minutes or p.keep_best):
            off.append("periodic and best checkpoints")
            self.set_policy(type(p)(None, None, p.keep_last, False))
        if self.guard.policy.action == "rollback":
            off.append("divergence rollback (the run pauses instead)")
            self.guard.policy.action = "pause"
            self.publish_controls()
        what = (
            f"the model is sharded across ranks ({self.sharded}): optitui's {dist.SHARDED_REASON}"
        )
        if off:
            what += f"; turned off: {', '.join(off)}"
        self.recorder.put(Event(self.step, "warning", what))

    def _save_on_failure(self) -> None:
        """Keep the last state when it is finite (the writer refuses NaN and inf)."""
        if self.saver is None or self.sharded is not None:
            return
        try:
            self.saver.save("failure")
        except Exception as exc:  # the state may be unreadable after the failure
            self.recorder.put(Event(self.step, "warning", f"no failure checkpoint: {exc}"))

    def _memory_message(self, exc: BaseException) -> str:
        """What ran out, where and when, with the device's figures (after freeing the cache)."""
        self.optimizer.zero_grad(set_to_none=True)
        figures = ""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            free, total = torch.cuda.mem_get_info(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            figures = (
                f" (peak {peak / 2**30:.2f} GiB allocated, {free / 2**30:.2f} of "
                f"{total / 2**30:.2f} GiB free now)"
            )
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "out of memory"
        if self.dist is not None and self.dist.world > 1:
            return (
                f"out of memory on rank {self.dist.rank} at step {self.step + 1}{figures}: "
                f"{first}; the other ranks wait in this step's collectives, so the step cannot "
                "be dropped on one rank: the run ends on every rank"
            )
        return f"out of memory at step {self.step + 1}{figures}: {first}; training paused"

    def _out_of_memory(self, exc: BaseException) -> None:
        """Drop the failed step, free what can be freed, pause with the figures."""
        msg = self._memory_message(exc)
        self.recorder.put(Event(self.step, "error", msg, {"marker": "oom"}))
        self.pause()
        self.pause_message = msg

    def _finish(self, final: str, message: str | None) -> None:
        try:
            self.flush()
        except Exception as exc:  # a failed read must not hide the original error
            self.recorder.put(Event(self.step, "error", f"could not flush metrics: {exc}"))
        self.health.detach()  # the optimizer outlives the run (a probe's loop goes on)
        self.pump.stop()
        self.machine.stop()  # its last samples before the store closes
        if self.saver is not None:
            self.saver.close()
        # answer commands that arrived too late to be applied
        while self.commands:
            cmd = self.commands.popleft()
            reason = f"the run has ended ({final})"
            self.recorder.put(Outcome(cmd.id, cmd.kind, cmd.raw, False, self.step, reason))
        self.state = final
        self.recorder.put(
            Event(self.step, "info", f"run {final}" + (f": {message}" if message else ""))
        )
        self.recorder.close(StatusUpdate(final, self.step, self.epoch, message=message))

    # -- torch.distributed: the ranks meet -----------------------------------
    def _sync(self) -> None:
        """Rank 0's commands and every rank's wish to stop, taken at the same step by all."""
        outgoing = None
        if self.leader:
            outgoing = [self._for_every_rank(c) for c in self._drain()]
        incoming: list[Command] = dist.broadcast_object(outgoing, self.device)
        if self.agree(self._stop_request is not None) and self._stop_reason is None:
            self._stop_reason = self._stop_request or "stop requested on another rank"
        # exactly what was broadcast: on rank 0 a command that arrived since the drain
        # stays queued for the next meeting, or rank 0 alone would apply it
        if incoming:
            self._apply_commands(deque(incoming))
        self._sync_at = self.step + self.job.sync_every

    def _drain(self) -> list[Command]:
        """What rank 0 takes to a meeting. A restore (and what follows it, to keep the
        order) waits for a meeting when no checkpoint is being written: waiting for the
        writer inside the meeting would hold every rank in a collective for as long as
        a multi-GB write takes, past ``--dist-timeout``."""
        out: list[Command] = []
        while self.commands:
            first = self.commands[0]
            writing = self.saver is not None and self.saver.busy()
            if first.kind == "restore" and (writing or any(c.kind == "save" for c in out)):
                break  # (a save before it in this batch would be waited for too)
            out.append(self.commands.popleft())
        return out

    def _for_every_rank(self, cmd: Command) -> Command:
        """Decide on rank 0 what would otherwise be looked up on each rank."""
        if cmd.kind == "restore" and self.saver is not None:
            self.saver.wait()  # the file every rank will read is complete
            try:
                ref = checkpoint.find(self.paths.checkpoints, cmd.args["id"]).id
                return Command(cmd.id, cmd.kind, {**cmd.args, "id": ref}, cmd.raw)
            except checkpoint.CheckpointError:
                return cmd  # every rank rejects it the same way
        if cmd.kind == "lr-find-apply":
            return control.resolve_apply(self, cmd)
        return cmd
