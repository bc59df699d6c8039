"""The training loop: one optimizer step per iteration, commands at the boundaries.

The hot path keeps to cheap host-side work: losses stay on the device in a
list and are read with one ``tolist()`` every ``flush_every`` steps (the only
host-device sync), records go to a bounded queue, and pending commands are
noticed by checking a deque.
"""

from __future__ import annotations

import math
import os
import random
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from optitui.store.commands import Command, Rejected
from optitui.store.inbox import CommandPump, NullPump
from optitui.store.layout import RunPaths
from optitui.store.records import (
    Event,
    MetaUpdate,
    MetricBatch,
    Outcome,
    StatusUpdate,
    ValRecord,
)
from optitui.store.supervise import BackgroundFailure, Supervisor
from optitui.store.writer import NullRecorder, Recorder
from optitui.trainer.control import answers as answer
from optitui.trainer.control import commands as control
from optitui.trainer.control import ramps, rangetest, surgery
from optitui.trainer.control.guard import Guard, GuardPolicy
from optitui.trainer.control.saver import Answer, Policy, Saver
from optitui.trainer.core import amp, checkpoint, dist, footprint, lr_record, run_facts, state
from optitui.trainer.core.device import (
    batch_size,
    is_out_of_memory,
    memory_allocated,
    memory_reserved,
    to_device,
)
from optitui.trainer.core.dist import DistInfo
from optitui.trainer.core.job import Job, JobError
from optitui.trainer.core.lookahead import Lookahead
from optitui.trainer.core.lr import LrControl
from optitui.trainer.loop.published import Published


class RankOutOfMemory(RuntimeError):
    """Out of memory in a step under torch.distributed: the run ends on every rank."""


class _EndOfData(Exception):
    """max_epochs reached, or a one-shot iterable ran out."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


class Trainer:
    """Runs a :class:`Job` and serves its run store. Use :meth:`run` once."""

    def __init__(
        self,
        job: Job,
        device: torch.device,
        paths: RunPaths,
        *,
        meta: dict[str, Any] | None = None,
        flush_every: int = 64,
        flush_seconds: float = 0.5,
        max_steps: int | None = None,
        dist_info: DistInfo | None = None,
    ) -> None:
        job.validate()
        self.job = job
        self.device = device
        self.paths = paths
        self.dist = dist_info
        self.leader = dist_info is None or dist_info.leader
        if dist_info is not None:
            job.train_data = dist.shard(job.train_data, dist_info)
            # every rank flushes and meets at the same steps: step-based only
            flush_every, flush_seconds = job.sync_every, float("inf")
        self.model = job.model
        #: what the forward pass calls: the model, or its DistributedDataParallel wrapper
        self.net: torch.nn.Module = job.model
        #: what shards the state across ranks (FSDP): no whole-state copies then
        self.sharded = dist.sharded_by(job.model, job.optimizer)
        wrap = dist_info is not None and job.ddp is not False and dist_info.world > 1
        if wrap and self.sharded is None:
            self.net = dist.wrap_model(job.model, device)
        self._sync_at = 0
        self._stop_request: str | None = None  # a rank's own wish to stop, agreed at a sync
        self.optimizer = job.optimizer
        self.lr = LrControl(job.optimizer, job.scheduler)
        #: what viewers see besides the metrics: group snapshots, controls, status
        self.published = Published(self)
        self.lr.on_change = self.published.lr_changed
        #: autocast, and a GradScaler for fp16 (Job.precision)
        self.amp = amp.Amp(job.precision, device)
        self.max_steps = max_steps if max_steps is not None else job.max_steps
        self.flush_every = max(1, flush_every)
        self.flush_seconds = flush_seconds
        self.step = 0
        self.epoch = 0
        self.state = "starting"
        self._state_message: str | None = None
        self._paused = False
        self._budget = 0  # steps left before pausing again ("step N")
        self._stop_reason: str | None = None
        self._data: Iterator[Any] | None = None
        self._batches_this_epoch = 0
        self._ever_batched = False
        self._epoch_rng: dict[str, Any] | None = None
        self._last_val: float | None = None
        self._buf_loss: list[torch.Tensor] = []
        self._buf_gn: list[torch.Tensor] = []
        self._buf_lr: list[lr_record.LrRow] = []
        self._buf_time: list[float] = []
        self._buf_epoch: list[int] = []
        #: per step: 1 where a GradScaler skipped the update (device tensors, read at flush)
        self._buf_skip: list[torch.Tensor | float] = []
        self._skips_recorded = False
        self._samples = 0  # counted at flushes: steps x samples per step
        self._batch_samples = 0  # samples per optimizer step, measured once an epoch
        self._measure_batch = True
        #: the batch size is measured on the first batch where the data does not say it
        self._batch_unrecorded = run_facts.loader_batch_size(job.train_data) is None
        self._move = device.type != "cpu"
        self._last_flush = (time.time(), 0, 0)  # (time, step, samples)
        self._checked_loss = False
        self.clip: float | None = job.clip_grad_norm
        self.lookahead: Lookahead | None = None
        self._ramps: list[ramps.Ramp] = []
        self.pause_message: str | None = None  # why the run paused itself
        self.guard = Guard(
            self,
            GuardPolicy(
                job.on_divergence, job.rollback_lr_factor, job.rollback_skip, job.spike_factor
            ),
        )
        self.policy = Policy(
            job.checkpoint_every, job.checkpoint_minutes, job.keep_last, job.keep_best
        )
        self.saver: Saver | None = None  # started with the run
        #: model entries that are not finite before training (masks filled with -inf):
        #: legitimate, so the divergence checks leave them be
        self.expected_non_finite: checkpoint.Expected = {}
        self._ckpt_at = float("inf")
        #: a range test asked for at this boundary, and every finished one by id
        self.pending_test: rangetest.RangeTest | None = None
        self.range_tests: dict[str, rangetest.RangeTest] = {}
        #: a checkpoint to start from (``--resume``), restored when the run starts
        self.resume_from: tuple[dict[str, Any], str] | None = None
        self.recorder: Recorder | NullRecorder
        self.pump: CommandPump | NullPump
        #: every background thread of the job runs under it; a fault is recorded, and
        #: one that keeps failing fails the run at the next step boundary
        self.supervisor = Supervisor(self._thread_fault)
        if self.leader:
            self.recorder = Recorder(paths, self._meta(meta or {}), supervisor=self.supervisor)
            self.pump = CommandPump(paths, self._reject, self.supervisor)
        else:
            self.recorder, self.pump = NullRecorder(), NullPump()
        self.commands = self.pump.queue

    # -- metadata --------------------------------------------------------------
    def _meta(self, extra: dict[str, Any]) -> dict[str, Any]:
        job = self.job
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start": time.time(),
            "device": str(self.device),
            "optimizer": type(job.optimizer).__name__,
            "scheduler": None if job.scheduler is None else type(job.scheduler).__name__,
            "max_steps": self.max_steps,
            "max_epochs": job.max_epochs,
            "grad_accum": job.grad_accum,
            "clip_grad_norm": job.clip_grad_norm,
            **run_facts.job_facts(job),
            "world_size": 1 if self.dist is None else self.dist.world,
            "groups": [
                control.group_label(g, i) for i, g in enumerate(self.optimizer.param_groups)
            ],
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "extra": job.extra,
            **extra,
        }

    def group_snapshot(self) -> list[dict[str, Any]]:
        """Every group's values and editable fields, as plain data (syncs on tensor lrs)."""
        return self.published.groups()

    def controls(self) -> dict[str, Any]:
        """Run-wide settings shown beside the group table."""
        return self.published.controls()

    def publish_controls(self) -> None:
        self.published.publish_controls()

    @property
    def state_message(self) -> str | None:
        return self._state_message

    # -- control, called at step boundaries -------------------------------------
    def start_ramp(self, ramp: ramps.Ramp) -> None:
        """Replace any ramp of the same field; its first value applies to the next step."""
        self.cancel_ramp(ramp.group, ramp.field)
        self._ramps.append(ramp)
        if ramps.advance(self, ramp):
            self._ramps.remove(ramp)

    def cancel_ramp(self, group: int | None, field: str) -> None:
        self._ramps = [
            r for r in self._ramps if not (r.field == field and group in (None, r.group))
        ]

    def _advance_ramps(self) -> None:
        finished = [r for r in self._ramps if ramps.advance(self, r)]
        if finished:
            self._ramps = [r for r in self._ramps if r not in finished]
            self.published.publish_groups()

    # -- checkpoints ----------------------------------------------------------------
    def save_checkpoint(
        self,
        reason: str,
        tag: str | None = None,
        answer: Answer | None = None,
        *,
        every_rank: bool = False,
    ) -> str:
        """Save in the background; ``answer`` hears once it is listed, or why not.

        ``every_rank``: called by every rank at this step (a command), so every rank's
        own RNG states go in; other saves (periodic, best) are rank 0's alone."""
        rngs = state.gather_rng(self) if every_rank else None
        if self.saver is None:  # rank 0 alone writes checkpoints (and answers)
            return ""
        snap = None
        if rngs is not None:
            snap = state.capture(self)
            snap["rng_by_rank"] = rngs
        cid = self.saver.save(reason, tag, snap=snap, answer=answer)
        self._ckpt_at = self.saver.next_due_step()
        return cid

    def rewind(self, snap: dict[str, Any], cid: str) -> None:
        """Go back to a checkpoint; the state left behind is saved first (undo)."""
        self.flush()  # the old branch's records end here
        here = state.capture(self)
        rngs = state.gather_rng(self)  # every rank rewinds at this step: each one's own
        if rngs is not None:
            here["rng_by_rank"] = rngs
        undo = None if self.saver is None else self.saver.save("before-restore", snap=here)
        old = self.step
        try:
            state.restore(self, snap)
        except Exception as exc:
            state.restore(self, here)
            raise checkpoint.CheckpointError(f"restore failed, nothing changed: {exc}") from exc
        self._last_flush = (time.time(), self.step, self._samples)
        self._ckpt_at = float("inf") if self.saver is None else self.saver.next_due_step()
        self.published.state_changed()  # the new step and values, also while paused
        self.recorder.put(
            Event(
                self.step,
                "checkpoint",
                f"restored {cid}: rewound from step {old} to {self.step}",
                {
                    "marker": "restore",
                    "id": cid,
                    "from_step": old,
                    "to_step": self.step,
                    "undo": undo,
                },
            )
        )

    def run_range_test(self, test: rangetest.RangeTest) -> rangetest.RangeTest:
        self.pending_test = None
        self.flush()
        self._set_state("lr-find")
        rangetest.run(self, test)
        self.range_tests[test.id] = test
        self._last_flush = (time.time(), self.step, self._samples)
        return test

    def set_policy(self, policy: Policy) -> None:
        self.policy = policy
        if self.saver is not None:
            self.saver.policy = policy
            self._ckpt_at = self.saver.next_due_step()
        self.publish_controls()

    def swap_optimizer(self, new: torch.optim.Optimizer) -> None:
        """Train on with ``new``: same groups, fresh state, the scheduler drives it."""
        self.optimizer = self.job.optimizer = new
        self.lr.rebind(new)
        if self.lr.scheduler is not None:
            surgery.rebind_scheduler(self.lr.scheduler, new)
        self._ramps = [r for r in self._ramps if r.field == "lr"]
        self.publish_controls()

    @property
    def paused(self) -> bool:
        """Paused now (not counting down a ``step N``)."""
        return self._paused and not self._budget

    def pause(self) -> None:
        self._paused = True
        self._budget = 0

    def resume(self) -> None:
        self._paused = False
        self._budget = 0
        self.pause_message = None

    def step_then_pause(self, n: int) -> None:
        self._paused = True
        self._budget = n

    def request_stop(self, reason: str) -> None:
        """Finish the current step, flush, and end. Safe from signal handlers and threads.

        Under torch.distributed the ranks agree at the next sync and stop together."""
        if self.dist is None:
            self._stop_reason = reason
        else:
            self._stop_request = reason
        self.pump.arrived.set()

    def stopping(self) -> bool:
        """A stop was asked for (a command, a signal, another rank): long work in a step
        boundary (the range test) ends early for it."""
        return self._stop_reason is not None or self._stop_request is not None

    def _thread_fault(self, message: str, tb: str) -> None:
        self.recorder.put(Event(self.step, "error", message, {"traceback": tb}))

    def _reject(self, r: Rejected) -> None:
        self.recorder.put(Outcome(r.id, r.kind, r.payload, False, self.step, r.reason))
        self.recorder.put(Event(self.step, "command", f"{r.kind}: rejected: {r.reason}"))

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
        if self.pending_test is not None:  # after its ack, before training goes on
            self.run_range_test(self.pending_test)
            self._set_state(
                "paused" if self._paused and not self._budget else "running",
                self.pause_message if self._paused else None,
            )

    def _set_state(self, state: str, message: str | None = None) -> None:
        if state != self.state or message != self._state_message:
            self.state, self._state_message = state, message
            self.recorder.put(StatusUpdate(state, self.step, self.epoch, message=message))

    # -- data --------------------------------------------------------------------
    def _next_batch(self) -> Any:
        while True:
            if self._data is None:
                # the RNG states the epoch's order is drawn from: a checkpoint replays them
                gens = state.data_generators(self.job.train_data)
                self._epoch_rng = state.rng_state(gens)  # fresh host copies already
                if self.dist is not None:
                    dist.set_epoch(self.job.train_data, self.epoch)
                self._data = iter(self.job.train_data)
                self._batches_this_epoch = 0
                self._measure_batch = True
            try:
                batch = next(self._data)
            except StopIteration:
                self._data = None
                if self._batches_this_epoch == 0:
                    if not self._ever_batched:  # nothing to train on: the Job is unusable
                        msg = "train_data yielded no batches: nothing to train on"
                        raise JobError(msg) from None
                    raise _EndOfData("train_data yielded no batches") from None
                self._end_epoch()
                continue
            self._batches_this_epoch += 1
            self._ever_batched = True
            return batch

    def _end_epoch(self) -> None:
        self.epoch += 1
        job = self.job
        if job.val_data is not None and job.val_every is None:
            self._validate()
        if job.scheduler_interval == "epoch":
            self.lr.step_scheduler()
        if job.max_epochs is not None and self.epoch >= job.max_epochs:
            raise _EndOfData(f"{job.max_epochs} epoch(s) done")

    # -- the step ------------------------------------------------------------------
    def _loss(self, batch: Any) -> torch.Tensor:
        job = self.job
        if job.step_fn is not None:
            return job.step_fn(self.net, batch)
        assert job.loss_fn is not None
        try:
            x, y = batch
        except (TypeError, ValueError):
            raise JobError(
                f"loss_fn needs (x, y) batches, got a {type(batch).__name__}; "
                "use step_fn(model, batch) for other batches"
            ) from None
        return job.loss_fn(self.net(x), y)

    def _check_loss(self, loss: Any) -> None:
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            what = (
                type(loss).__name__
                if not isinstance(loss, torch.Tensor)
                else (f"a tensor of shape {tuple(loss.shape)}")
            )
            raise JobError(f"the loss must be a scalar tensor, got {what}")
        if not loss.requires_grad:
            raise JobError("the loss does not require grad (is the model frozen, or detached?)")
        self._checked_loss = True

    def gradients(self, next_batch: Callable[[], Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The job's own step up to ``optimizer.step()``: zero the grads, forward and backward
        over ``grad_accum`` micro-batches, clip. Returns the mean loss and the grad norm
        (when clipping), both still on the device. The range test uses it too."""
        self.optimizer.zero_grad(set_to_none=True)
        accum = self.job.grad_accum
        total: torch.Tensor | None = None
        for k in range(accum):
            batch = next_batch()
            if self._move:  # on the CPU, batches from a CPU loader are already in place
                batch = to_device(batch, self.device)
            if self._measure_batch:  # once an epoch, not every step
                self._batch_samples = batch_size(batch) * accum
                self._measure_batch = False
                if self._batch_unrecorded and self._batch_samples:  # data that did not say
                    self.recorder.put(MetaUpdate({"batch_size": self._batch_samples // accum}))
                    self._batch_unrecorded = False
            # DDP all-reduces the gradients of the last micro-batch only
            with dist.no_sync(self.net, k < accum - 1):
                with self.amp.autocast():  # the forward pass and the loss; backward outside
                    loss = self._loss(batch)
                if not self._checked_loss:
                    self._check_loss(loss)
                self.amp.backward(loss / accum if accum > 1 else loss)  # scaled under fp16
            d = loss.detach()
            if d.dtype in (torch.float16, torch.bfloat16):  # a sum of 8 bf16 losses drifts
                d = d.float()
            total = d if total is None else total + d
        assert total is not None
        norm = None
        if self.clip is not None:
            self.amp.unscale(self.optimizer)  # clip the true gradients, not the scaled ones
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, self.clip)
        return (total / accum if accum > 1 else total), norm

    def optimizer_step(self) -> torch.Tensor | float:
        """``optimizer.step()``, through the GradScaler under fp16; returns whether the
        scaler skipped it (a device tensor, read at flush; 0.0 when nothing can skip)."""
        return self.amp.step(self.optimizer)

    def _train_step(self) -> None:
        loss, norm = self.gradients(self._next_batch)
        if norm is not None:
            self._buf_gn.append(norm)
        self.lr.notice_writes()  # a step_fn that writes the lr itself: its value is the base
        self._buf_skip.append(self.optimizer_step())
        if self.lookahead is not None:
            self.lookahead.after_step()
        # record the lr this step used, before the scheduler moves it
        self._buf_lr.append(lr_record.snapshot(self.optimizer.param_groups))
        if self.job.scheduler_interval == "step":
            self.lr.step_scheduler()
        self._buf_loss.append(loss)
        self._buf_time.append(time.time())
        self._buf_epoch.append(self.epoch)

    def _validate(self) -> None:
        job = self.job
        if job.val_data is None:
            return
        was_training = self.model.training
        self.model.eval()
        total = torch.zeros((), device=self.device)
        n = 0
        with torch.no_grad():
            for batch in job.val_data:
                total += self._loss(to_device(batch, self.device)).detach().float()
                n += 1
        self.model.train(was_training)
        value = self.mean(total / max(n, 1)) if n else math.nan  # one sync per evaluation
        self._last_val = value
        self.recorder.put(ValRecord(self.step, self.epoch, value))
        saver = self.saver
        if (
            saver is not None
            and self.policy.keep_best
            and math.isfinite(value)
            and (saver.best_val is None or value < saver.best_val)
        ):
            saver.best_val = value
            self.save_checkpoint("best")
        if isinstance(job.scheduler, ReduceLROnPlateau) and math.isfinite(value):
            self.lr.step_scheduler(value)

    # -- records -------------------------------------------------------------------
    def flush(self, check: bool = False) -> None:
        """Read the buffered losses (one sync for the whole batch) and queue the records.

        With ``check``, the divergence guard looks at what was read (and may pause or
        roll back)."""
        n = len(self._buf_loss)
        if n == 0:
            return
        # under torch.distributed every rank takes a batch per step: samples/s is the total
        self._samples += n * self._batch_samples * (1 if self.dist is None else self.dist.world)
        now = time.time()
        t0, s0, n0 = self._last_flush
        dt = max(now - t0, 1e-9)
        steps_per_s = (self.step - s0) / dt
        mem = memory_allocated(self.device)
        if mem is not None:  # host-side counters of the caching allocator: no sync
            held = memory_reserved(self.device)
            self.recorder.put(MetaUpdate({"memory": {"allocated": mem, "reserved": held}}))
        if self.dist is None:
            losses = torch.stack(self._buf_loss).float().tolist()
        else:  # the mean over ranks, and each rank's pace and memory, in one all-gather
            losses, ranks = dist.gather_losses(
                torch.stack(self._buf_loss), [steps_per_s, float(mem or 0)], self.device
            )
            self.recorder.put(
                MetaUpdate(
                    {
                        "ranks": [
                            {
                                "rank": r,
                                "steps_per_s": s[0],
                                "device_mem": int(s[1]) if mem is not None else None,
                            }
                            for r, s in enumerate(ranks)
                        ]
                    }
                )
            )
        if self.saver is not None:
            self.saver.last_loss = losses[-1]
        cols: dict[str, Any] = {  # ints and floats alike: the encoder stores float64
            "step": range(self.step - n + 1, self.step + 1),
            "epoch": self._buf_epoch,
            "time": self._buf_time,
            "loss": losses,
        }
        norms = None
        if len(self._buf_gn) == n:
            cols["grad_norm"] = norms = torch.stack(self._buf_gn).float().tolist()
        skipped = amp.read_flags(self._buf_skip) if len(self._buf_skip) == n else None
        if skipped is None and self._skips_recorded:
            skipped = [0.0] * n  # the column stays once a step could be skipped
        if skipped is not None:
            self._skips_recorded = True  # the scaler skipped these: no update, no true grad norm
            cols["skipped"] = skipped
            if norms is not None:
                cols["grad_norm"] = norms = [
                    math.nan if s else v for s, v in zip(skipped, norms, strict=True)
                ]
        # tensor-valued lrs (capturable, fused) were copied each step; read here, once
        by_group = list(zip(*lr_record.columns(self._buf_lr), strict=True))
        for i, col in enumerate(by_group):
            cols[f"lr/{i}"] = list(col)
        self.recorder.put(MetricBatch(cols))
        self.recorder.put(
            StatusUpdate(
                self.state,
                self.step,
                self.epoch,
                steps_per_s=steps_per_s,
                samples_per_s=(self._samples - n0) / dt,
                device_mem=mem,
                last_record=now,
            )
        )
        self._last_flush = (now, self.step, self._samples)
        if self.policy.minutes is not None and self.saver is not None and self.saver.due():
            self.save_checkpoint("periodic")
        self._buf_loss, self._buf_gn, self._buf_lr = [], [], []
        self._buf_time, self._buf_epoch, self._buf_skip = [], [], []
        self.published.publish_if_moved()  # a cycled momentum, a field ramp
        if check:
            self.guard.observe(cols["step"], losses, norms, skipped)

    # -- the loop ------------------------------------------------------------------
    def _start(self) -> None:
        if self.job.seed is not None:
            seed_everything(self.job.seed)
        self.model.train()
        self.recorder.start()
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

    @property
    def framework_checkpoints(self) -> bool:
        """Checkpoints are a framework's own (Lightning, HF), written its own way."""
        return False

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

    def _wait_while_paused(self) -> None:
        self.flush()
        self._set_state("paused", self.pause_message)
        if self.leader:
            self.pump.arrived.wait(0.5)
            self.pump.arrived.clear()
        if self.dist is not None:
            self._sync()  # the other ranks wait here for rank 0's next word

    # -- torch.distributed ---------------------------------------------------------
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

    def params_changed(self) -> None:
        """Which parameters train changed (freeze): DDP's reducer is rebuilt on every rank."""
        if self.net is not self.model:
            self.net = dist.wrap_model(self.model, self.device)

    def agree(self, flag: bool) -> bool:
        """True on every rank when it is True on any (just ``flag`` without distributed)."""
        if self.dist is None:
            return flag
        return dist.any_rank(flag, self.device)

    def mean(self, value: torch.Tensor) -> float:
        """A scalar's mean over ranks (its value without distributed): one sync."""
        if self.dist is None:
            return float(value)
        return dist.mean_scalar(value)

    def run(self) -> str:
        """Train until max steps/epochs, a stop command, or an error. Returns the end state."""
        self._start()
        final, message = "finished", None
        try:
            while True:
                self._take_commands()
                if self._stop_reason is not None:
                    final, message = "stopped", self._stop_reason
                    break
                if self._paused and not self._budget:
                    self._wait_while_paused()
                    continue
                if self.max_steps is not None and self.step >= self.max_steps:
                    message = f"{self.max_steps} steps done"
                    break
                try:
                    self._train_step()
                except RuntimeError as exc:  # torch.OutOfMemoryError is one too
                    if not is_out_of_memory(exc):
                        raise
                    if self.dist is not None and self.dist.world > 1:
                        # the peers wait in this step's collectives: no rank can drop it
                        raise RankOutOfMemory(self._memory_message(exc)) from exc
                    self._out_of_memory(exc)
                    continue
                self.step += 1
                if self._budget:
                    self._budget -= 1
                if self.step >= self._ckpt_at:
                    self.save_checkpoint("periodic")
                val_every = self.job.val_every
                if val_every is not None and self.step % val_every == 0:
                    self._validate()
                if len(self._buf_loss) >= self.flush_every or (
                    self._buf_time[-1] - self._last_flush[0] >= self.flush_seconds
                ):
                    self.flush(check=True)
        except _EndOfData as end:
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
        self.pump.stop()
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
