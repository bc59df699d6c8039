"""The trainer's state and what a command may do to it between two steps.

:class:`Steering` holds everything a run is (the Job's model and optimizer, the lr
control, step and epoch, the data position, checkpoints, the divergence guard) and
implements :class:`~optitui.trainer.control.steerable.Steerable`: ramps, pause and the
step budget, stop, saves, rewinds, an optimizer swap. The step itself is
:mod:`optitui.trainer.loop.step`; the loop and its boundary :mod:`optitui.trainer.loop.trainer`.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch

from optitui.store.commands import Rejected
from optitui.store.inbox import CommandPump, NullPump
from optitui.store.layout import RunPaths
from optitui.store.records import Event, Outcome, StatusUpdate
from optitui.store.supervise import Supervisor
from optitui.store.writer import NullRecorder, Recorder
from optitui.trainer.control import race, rangetest, surgery
from optitui.trainer.control.guard import Guard, GuardPolicy
from optitui.trainer.control.ramps import Ramp
from optitui.trainer.control.ramps import advance as advance_ramp
from optitui.trainer.control.saver import Answer, Policy, Saver
from optitui.trainer.core import amp, checkpoint, dist, lr_record, run_facts, state
from optitui.trainer.core.dist import DistInfo
from optitui.trainer.core.health import Health, Measured
from optitui.trainer.core.hparams import group_label
from optitui.trainer.core.job import Job
from optitui.trainer.core.lookahead import Lookahead
from optitui.trainer.core.lr import LrControl
from optitui.trainer.loop import device_read
from optitui.trainer.loop.device_read import DeferredReads, InFlight
from optitui.trainer.loop.machine_record import MachineRecord
from optitui.trainer.loop.published import Published
from optitui.trainer.loop.user_metrics import UserMetrics, Value

#: what a step buffers until the flush: its loss (a device tensor), whether a GradScaler
#: skipped its update (1: a device tensor, read at flush; 0.0 when nothing can skip), the
#: lr each group used, its wall time and its epoch
StepRow = tuple[torch.Tensor, torch.Tensor | float, lr_record.LrRow, float, int]


class Steering:
    """A run's state, its records' destination, and the changes commands make to it."""

    #: the loop runs the job's own steps on its own data (a race needs that)
    own_steps = True
    #: metric warnings go to stderr as well as into the run, except while a headless
    #: reporter prints the run's events there itself (then once, not twice); the entry
    #: points set it around their reporter
    echo_warnings = True

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
        self.data_iter: Iterator[Any] | None = None
        self.epoch_batches = 0
        self._ever_batched = False
        self.epoch_rng: dict[str, Any] | None = None
        self.last_val: float | None = None
        #: one row per step since the last flush (split into columns there): one append
        #: on the hot path instead of one per column
        self._rows: list[StepRow] = []
        self._buf_gn: list[torch.Tensor] = []
        self._skips_recorded = False
        #: each group's gradient norm, parameter norm and update ratio every
        #: ``health_every`` steps: (row in the buffers, its per-tensor norms on the
        #: device), read at the flush
        self.health = Health(job.health_every, job.health_copy_gb)
        self._buf_health: Measured = []
        #: the user's own metrics, buffered beside the losses until a flush
        self.user = UserMetrics(self._metric_warning, lambda: self.step)
        self._step_metrics: dict[str, Value] | None = None
        self._got: dict[str, Value] | None = None  # what the last step_fn call returned
        self._one_pass = False  # the step being taken is one micro-batch, without autocast
        self._micro = False  # a micro-batch of the step being taken (under autocast)
        #: CUDA: each flush's values are copied to the host and read at the next flush
        self.reads: DeferredReads | None = device_read.for_device(device)
        self._in_flight: InFlight | None = None
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
        self._ramps: list[Ramp] = []
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
        #: a race asked for at this boundary, and every finished one by id
        self.pending_race: race.Race | None = None
        self.races: dict[str, race.Race] = {}
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
        #: the machine, sampled on a thread of its own (never this one)
        self.machine = MachineRecord(
            self.supervisor,
            self.recorder.put,
            device,
            dist_info,
            lambda: self.step,
            interval=float(job.system_every),
        )

    # -- metadata and what viewers see ---------------------------------------
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
            "groups": [group_label(g, i) for i, g in enumerate(self.optimizer.param_groups)],
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

    def publish_groups(self) -> None:
        """A snapshot of every group's values, now (after an edit, a rollback)."""
        self.published.publish_groups()

    @property
    def ramps(self) -> list[Ramp]:
        """The fields moving to a new value over the next steps."""
        return self._ramps

    @property
    def state_message(self) -> str | None:
        return self._state_message

    def _set_state(self, state: str, message: str | None = None) -> None:
        if state != self.state or message != self._state_message:
            self.state, self._state_message = state, message
            self.recorder.put(StatusUpdate(state, self.step, self.epoch, message=message))

    # -- ramps, the optimizer ------------------------------------------------
    def start_ramp(self, ramp: Ramp) -> None:
        """Replace any ramp of the same field; its first value applies to the next step."""
        self.cancel_ramp(ramp.group, ramp.field)
        self._ramps.append(ramp)
        if advance_ramp(self, ramp):
            self._ramps.remove(ramp)

    def cancel_ramp(self, group: int | None, field: str) -> None:
        self._ramps = [
            r for r in self._ramps if not (r.field == field and group in (None, r.group))
        ]

    def _advance_ramps(self) -> None:
        finished = [r for r in self._ramps if advance_ramp(self, r)]
        if finished:
            self._ramps = [r for r in self._ramps if r not in finished]
            self.published.publish_groups()

    def swap_optimizer(self, new: torch.optim.Optimizer) -> None:
        """Train on with ``new``: same groups, fresh state, the scheduler drives it."""
        self.optimizer = self.job.optimizer = new
        self.lr.rebind(new)
        if self.lr.scheduler is not None:
            surgery.rebind_scheduler(self.lr.scheduler, new)
        self._ramps = [r for r in self._ramps if r.field == "lr"]
        self.publish_controls()

    def params_changed(self) -> None:
        """Which parameters train changed (freeze): DDP's reducer is rebuilt on every rank."""
        if self.net is not self.model:
            self.net = dist.wrap_model(self.model, self.device)

    # -- checkpoints ---------------------------------------------------------
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

    def set_policy(self, policy: Policy) -> None:
        self.policy = policy
        if self.saver is not None:
            self.saver.policy = policy
            self._ckpt_at = self.saver.next_due_step()
        self.publish_controls()

    @property
    def framework_checkpoints(self) -> bool:
        """Checkpoints are a framework's own (Lightning, HF), written its own way."""
        return False

    # -- pause, the step budget, stop ----------------------------------------
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

    # -- ranks, background threads, refused commands -------------------------
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

    def _metric_warning(self, message: str, step: int) -> None:
        if self.echo_warnings:
            print(f"optitui: {message}", file=sys.stderr, flush=True)
        self.recorder.put(Event(step, "warning", message))

    def _thread_fault(self, message: str, tb: str) -> None:
        self.recorder.put(Event(self.step, "error", message, {"traceback": tb}))

    def _reject(self, r: Rejected) -> None:
        self.recorder.put(Outcome(r.id, r.kind, r.payload, False, self.step, r.reason))
        self.recorder.put(Event(self.step, "command", f"{r.kind}: rejected: {r.reason}"))

    # -- what the loop itself defines (:class:`~optitui.trainer.loop.step.Stepping`)
    def next_batch(self) -> Any:
        """The next training batch from the job's data."""
        raise NotImplementedError

    def flush(self, check: bool = False) -> None:
        """Read the buffered losses and queue the records."""
        raise NotImplementedError
