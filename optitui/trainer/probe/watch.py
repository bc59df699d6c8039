"""Own training loops: ``probe = optitui.watch(optimizer, model=model)``, ``probe.step(loss)``.

The probe is a :class:`~optitui.trainer.loop.trainer.Trainer` whose loop is the user's.
It serves the same run store and applies commands through the same
``control.apply``, at the boundary that ``probe.step(loss)`` marks. Call it
once per iteration, right after ``optimizer.step()`` (and before
``scheduler.step()``, though after works too)::

    probe = optitui.watch(optimizer, model=model, scheduler=scheduler)
    for x, y in data:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        probe.step(loss)          # the step boundary: records, commands, pause
        scheduler.step()
        if probe.should_stop:
            break
    probe.close()

What it does differently from the trainer, because the loop is not its own:

- ``step(loss)`` keeps ``loss.detach()`` on the device and reads a whole batch
  of them with one ``tolist()`` every ``flush_every`` steps, like the trainer.
- The lr a step used is taken by an optimizer step pre-hook, so the record is
  right whichever side of ``scheduler.step()`` the probe is called on.
- The scheduler given to ``watch(scheduler=...)`` is stepped by the user; the
  probe wraps its ``step`` (a subclass swapped in for the instance, undone by
  ``close()``) to keep the lr multipliers out of the scheduler's sight. Without
  it, ``watch()`` holds the one torch scheduler it finds driving the optimizer.
- A loop that writes ``param_group['lr']`` itself (``lr = get_lr(it)``): the
  pre-hook notices the write, takes the value as the schedule's, and puts the
  multiplier back on top, so an edit lasts.
- Pause blocks inside ``step()``. Stop sets ``should_stop``; a loop that calls
  ``step()`` again regardless gets :class:`StopTraining` (at once with
  ``on_stop="raise"``).
- Restoring a checkpoint puts back the model, optimizer, scheduler, lr
  multipliers, RNG states and the probe's step count; the loop's own position
  (its data iterator, its counters) goes on where it is.
- The range test runs in flight: over the next N of the user's own steps the
  probe sets the lr before each step and records the loss, then puts the
  model, optimizer, scheduler and RNG back as they were. The batches it used
  are consumed: the loop does not see them again.
- swap-optimizer is refused (the loop holds its optimizer object).
- Under torch.distributed (a process group the script or its framework set up),
  call ``watch()`` on every rank. Rank 0 makes the store and reads commands;
  every ``sync_every`` steps the ranks meet inside ``probe.step`` and every rank
  applies rank 0's commands at the same step. The recorded loss is the mean
  over ranks. Under torchrun without a process group the ranks are independent
  runs and rank 0 alone records.
- ``probe.step(loss, samples=n, metrics={...})``: samples/s and the step's own
  scalars; ``probe.log(name=v)`` values at other times; ``probe.val_loss(v)``.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from optitui.store.records import Event, ValRecord
from optitui.trainer.control import rangetest
from optitui.trainer.core import dist, lr_record, run_facts
from optitui.trainer.probe.flight import Flight
from optitui.trainer.probe.held_scheduler import HeldScheduler, check_scheduler, find_scheduler
from optitui.trainer.probe.loop_trainer import CheckpointBackend, LoopTrainer, loops_job
from optitui.trainer.probe.loss_value import as_loss, loss_device
from optitui.trainer.probe.registry import Registry
from optitui.trainer.probe.run_dir import ENV_RUN_DIR as ENV_RUN_DIR
from optitui.trainer.probe.run_dir import run_paths, take_handed
from optitui.trainer.probe.run_dir import set_script_meta as set_script_meta

OnStop = Literal["flag", "raise"]
Loss = torch.Tensor | float | None
Scalars = Mapping[str, Any] | None  # a step's own metrics: names to 0-d tensors or numbers


class StopTraining(BaseException):
    """Raised by ``probe.step()`` when the run was asked to stop and the loop goes on.

    A BaseException, as KeyboardInterrupt is, so that a loop which skips bad batches
    with ``except Exception: continue`` cannot swallow it and train on.
    ``optitui run`` treats it as a clean stop. A script run with plain ``python``
    may catch it (``except optitui.StopTraining``) or check ``probe.should_stop``.
    """


#: called by watch() before it makes a probe: zero-code mode steps aside (and hands over a
#: probe it already made for that optimizer)
WATCH_HOOKS: list[Callable[[Optimizer], Probe | None]] = []


#: every probe this process made that serves a store, and those still open
PROBES: Registry[Probe] = Registry()


class Probe:
    """Watches and steers a training loop it does not own. Made by :func:`watch`.

    Integrations make their own with a few more arguments: ``mode`` and ``limits``
    (written to the run's metadata as ``probe``), a checkpoint ``backend`` in the
    framework's format, ``hooks=False`` when they call :meth:`before_step`
    themselves, ``first_step`` (the framework's global step), and
    ``raise_if_ignored=False`` when the framework may step on after a stop.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        model: nn.Module | None = None,
        *,
        scheduler: LRScheduler | ReduceLROnPlateau | None = None,
        run_dir: Path | str | None = None,
        root: Path | str = "runs",
        name: str | None = None,
        flush_every: int = 64,
        flush_seconds: float = 0.5,
        on_stop: OnStop = "flag",
        max_steps: int | None = None,
        on_divergence: str | None = None,
        mode: str = "watch",
        limits: Sequence[str] = (),
        meta: dict[str, Any] | None = None,
        backend: CheckpointBackend | None = None,
        hooks: bool = True,
        first_step: int = 0,
        raise_if_ignored: bool = True,
        sync_every: int | None = None,
        health_every: int | None = None,
        health_copy_gb: float | None = None,
    ) -> None:
        if on_stop not in ("flag", "raise"):
            raise ValueError(f"on_stop: {on_stop!r}; use 'flag' or 'raise'")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.on_stop: OnStop = on_stop
        #: raise StopTraining when the loop steps again after should_stop (a framework
        #: that must finish some steps first, e.g. Lightning's min_steps, turns this off)
        self.raise_if_ignored = raise_if_ignored
        self.mode = mode
        self.backend = backend
        self._closed = False
        self._stop_seen = False
        self._lr_used: lr_record.LrRow | None = None
        self._norm: torch.Tensor | None = None
        #: the optimizer stepped since the last boundary (its pre-hook says so)
        self._stepped = False
        self._skipped: torch.Tensor | float = 0.0  # GradScaler's found_inf for this step
        self._flight: Flight | None = None
        self._hooks: list[Any] = []
        self._held: HeldScheduler | None = None
        self._device = loss_device(optimizer)
        info = dist.from_process_group()
        self.rank, self.world = (info.rank, info.world) if info else (dist.env_rank(), 1)
        #: ranks other than 0 record nothing (rank 0 writes the store); under a process
        #: group they still take every command, at the same step as rank 0
        self.silent = self.rank != 0
        self.trainer: LoopTrainer | None = None
        if info is None and self.silent:
            return  # torchrun's ranks without a process group: independent, rank 0 records
        check_scheduler(optimizer, scheduler)
        handed = take_handed(run_dir, max_steps, on_divergence, health_every)
        max_steps, on_divergence = handed.max_steps, handed.on_divergence
        every = 16 if handed.health_every is None else handed.health_every
        job = loops_job(optimizer, model, on_divergence, sync_every, every, health_copy_gb)
        script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
        extra: dict[str, Any] = {
            "script": None if script is None else str(script),
            "argv": list(sys.argv),
            **run_facts.script_facts(script, list(sys.argv[1:])),
            "mode": "in-process",
            **handed.meta,
            **(meta or {}),
            "scheduler": None if scheduler is None else type(scheduler).__name__,
            "scheduler_settings": run_facts.scheduler_settings(scheduler),
            "world_size": self.world,
            "sync_every": None if info is None else job.sync_every,
            "probe": {"mode": mode, "limits": list(limits)},
        }
        stem = name or (script.stem if script is not None else "run")
        paths = run_paths(
            info, root, stem, run_dir if run_dir is not None else handed.run_dir, self._device
        )
        self.trainer = LoopTrainer(
            self,
            job,
            self._device,
            paths,
            meta=extra,
            flush_every=flush_every,
            flush_seconds=flush_seconds,
            max_steps=max_steps,
            dist_info=info,
        )
        t = self.trainer
        # the scheduler is checked above against the optimizer's groups, not its identity
        # (frameworks wrap optimizers); the trainer's Job saw none so it never steps it
        job.scheduler = scheduler
        t.lr.scheduler = scheduler
        t.step = first_step
        if scheduler is not None:
            self._held = HeldScheduler(self, scheduler)
        if hooks:
            self._hooks.append(optimizer.register_step_pre_hook(self._pre_hook))
        t._start()
        PROBES.add(self)
        self._boundary()  # commands sent before the loop started apply now, at step 0

    # -- what the loop sees ----------------------------------------------------------
    @property
    def steps(self) -> int:
        """Optimizer steps recorded so far (the store's step axis)."""
        return 0 if self.trainer is None else self.trainer.step

    @property
    def epoch(self) -> int:
        return 0 if self.trainer is None else self.trainer.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        if self.trainer is not None:
            self.trainer.epoch = int(value)

    @property
    def run_dir(self) -> Path | None:
        return None if self.trainer is None else self.trainer.paths.root

    @property
    def state(self) -> str:
        """running, paused, lr-find, or how the run ended."""
        return "silent" if self.trainer is None else self.trainer.state

    @property
    def stop_reason(self) -> str | None:
        t = self.trainer
        if t is None:
            return None
        if t._stop_reason is not None:
            return t._stop_reason
        if t.max_steps is not None and t.step >= t.max_steps and self._flight is None:
            return f"{t.max_steps} steps done"
        return None

    @property
    def should_stop(self) -> bool:
        """True once the run was asked to stop (or reached max_steps): end the loop."""
        return self.stop_reason is not None

    def before_step(
        self, grad_scale: torch.Tensor | None = None, found_inf: torch.Tensor | None = None
    ) -> None:
        """Called just before ``optimizer.step()`` (the probe's pre-hook does it): takes the
        lr the step will use and clips the gradients when the run clips.

        A GradScaler stepping a fused optimizer hands it ``grad_scale`` (gradients still
        scaled) and ``found_inf`` (the step will be skipped): the norm is then the
        unscaled one, clipping scales the gradients by what the true norm asks, and
        ``found_inf`` marks the step as skipped (read at the next flush)."""
        t = self.trainer
        if t is None:
            return
        groups = t.optimizer.param_groups
        if self._flight is not None:
            self._flight.before_step()  # the sweep's lr wins over one the script wrote
        else:
            t.lr.notice_writes()  # a loop that writes the lr itself: its value is the base
        # a copy (tensor lrs change in place); the row of the step before when no lr moved
        rows = t._rows
        self._lr_used = lr_record.snapshot(groups, rows[-1][2] if rows else None)
        if found_inf is not None:
            self._skipped = found_inf
        if t.clip is not None:
            params = [p for g in groups for p in g["params"]]
            if grad_scale is None:
                self._norm = torch.nn.utils.clip_grad_norm_(params, t.clip)
            else:  # the optimizer divides by grad_scale itself: clip by the true norm
                grads = [p.grad for p in params if p.grad is not None]
                norm = torch.nn.utils.get_total_norm(grads) / grad_scale
                torch.nn.utils.clip_grads_with_norm_(params, t.clip, norm)
                self._norm = norm

    def _pre_hook(self, opt: Optimizer, args: Any, kwargs: Any) -> None:
        self._stepped = True
        # set by GradScaler.step on optimizers that unscale inside their own step (fused)
        self.before_step(getattr(opt, "grad_scale", None), getattr(opt, "found_inf", None))

    def step(self, loss: Loss = None, samples: int | None = None, metrics: Scalars = None) -> None:
        """The step boundary, once per iteration after ``optimizer.step()``.

        Records the loss without reading it, applies pending commands, blocks while
        paused. Raises StopTraining when stopping and the loop ignored ``should_stop``
        (or at once with ``on_stop="raise"``). ``samples`` (the batch size) gives the
        dashboard its samples/s (kept until given again); ``metrics`` the step's scalars."""
        t = self.trainer
        if t is None:
            return
        if self._closed:
            raise RuntimeError("this probe is closed")
        if samples is not None:
            t._batch_samples = int(samples)  # counted at each flush, as the trainer does
        ignored = self._stop_seen
        # no optimizer step since the last boundary: a GradScaler skipped it (inf grads)
        skipped = self._skipped if self._stepped or not self._hooks else 1.0
        self._stepped, self._skipped = False, 0.0
        if self._flight is not None:
            used, self._lr_used, self._norm = self._lr_used, None, None
            t.health.drop()  # a range test's step: not the run's
            self._flight.step(loss, used)
        else:
            self._record(t, loss, skipped, metrics)
        self._boundary()
        reason = self.stop_reason
        if reason is not None:
            t.flush()
            if (ignored and self.raise_if_ignored) or self.on_stop == "raise":
                raise StopTraining(reason)
            self._stop_seen = True

    def val_loss(self, value: float) -> None:
        """Record a validation loss at the current step (plotted beside the training loss)."""
        t = self.trainer
        if t is None:
            return
        t.last_val = float(value)
        t.recorder.put(ValRecord(t.step, t.epoch, float(value)))

    def log(self, **values: Any) -> None:
        """Record values at the current step that are not per-step (an evaluation)."""
        if self.trainer is not None:
            self.trainer.log_values(values)

    def _record(
        self, t: LoopTrainer, loss: Loss, skipped: torch.Tensor | float, metrics: Scalars = None
    ) -> None:
        """The hot path: device tensors and host floats into buffers, nothing read back."""
        lrs = self._lr_used
        if lrs is None:
            rows = t._rows
            lrs = lr_record.snapshot(t.optimizer.param_groups, rows[-1][2] if rows else None)
        self._lr_used = None
        if t.lookahead is not None:
            t.lookahead.after_step()
        d = as_loss(loss, self._device)
        self._device = d.device  # a number given later goes where the losses are
        t.user.add_given(metrics)
        t.take_health(len(t._rows))
        t._rows.append((d, skipped, lrs, time.time(), t.epoch))
        if self._norm is None and t.clip is not None:
            self._norm = torch.full((), math.nan, device=self._device)  # a step not taken
        if self._norm is not None:
            t._buf_gn.append(self._norm)
            self._norm = None
        t._after_step()  # counted, then saved and flushed when due, as the trainer does

    def _boundary(self) -> None:
        """Ramps and commands, then wait while paused (a range test in flight runs first).

        Under torch.distributed commands are taken only when the ranks meet, every
        ``sync_every`` steps and while paused, so every rank applies them at one step."""
        t = self.trainer
        assert t is not None
        if self._flight is None:
            t._take_commands()
        while t._paused and not t._budget and t._stop_reason is None and self._flight is None:
            t._wait_while_paused()  # meets the other ranks under torch.distributed
            if t.dist is None and t.commands:
                t._apply_commands()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def testing(self) -> bool:
        """A range test is running over the loop's steps."""
        return self._flight is not None

    # -- the range test, in flight ----------------------------------------------------------
    def start_test(self, test: rangetest.RangeTest) -> None:
        assert self.trainer is not None
        self._flight = Flight(self, self.trainer, test)

    def test_ended(self) -> None:
        self._flight = None
        if self.trainer is not None:  # the next step is measured when it is on the interval
            self.trainer.health.arm(self.trainer.step, self.optimizer)

    # -- the end ------------------------------------------------------------------------------
    def close(self, error: BaseException | None = None) -> None:
        """Flush the store and mark the run finished, stopped, or failed (with ``error``).
        Also done by the context manager, and at exit for a probe left open."""
        t = self.trainer
        if t is None or self._closed:
            return
        self._closed = True
        PROBES.closed(self)
        try:
            if self._flight is not None:
                self._flight.end("cancelled", "the run ended during the test")
        finally:
            for h in self._hooks:
                h.remove()
            self._hooks.clear()
            if self._held is not None:
                self._held.release()
            final, message = "finished", self.stop_reason
            if error is not None and not isinstance(error, StopTraining):
                t.leave_group()  # the other ranks may be elsewhere: no more meetings
            if isinstance(error, KeyboardInterrupt):
                final, message = "stopped", "interrupted"
            elif error is not None and not isinstance(error, StopTraining):
                final, message = "failed", f"{type(error).__name__}: {error}"
                tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
                t.recorder.put(Event(t.step, "error", message, {"traceback": tb}))
            elif t._stop_reason is not None:
                final = "stopped"
            t._finish(final, message)

    def __enter__(self) -> Probe:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(exc)


def watch(
    optimizer: Optimizer,
    model: nn.Module | None = None,
    *,
    scheduler: LRScheduler | ReduceLROnPlateau | None = None,
    run_dir: Path | str | None = None,
    root: Path | str = "runs",
    name: str | None = None,
    flush_every: int = 64,
    on_stop: OnStop = "flag",
    max_steps: int | None = None,
    on_divergence: str | None = None,
    sync_every: int | None = None,
    health_every: int | None = None,
    health_copy_gb: float | None = None,
) -> Probe:
    """Serve a run store for a loop you wrote; call ``probe.step(loss)`` after each
    ``optimizer.step()``.

    ``model`` puts buffers (BatchNorm statistics) into checkpoints and range-test
    restores; without it only the optimizer's parameters are saved. ``scheduler``
    keeps live lr edits in the schedule's shape (without it, the one torch scheduler
    driving the optimizer is found and held; a loop that writes ``param_group['lr']``
    itself needs none). The store goes to ``run_dir``, or
    the directory ``optitui run`` chose, or a new one under ``root``. Watching an
    optimizer that is already watched returns the same probe. Under torch.distributed
    call it on every rank; ``sync_every`` (16) is how many steps pass between the
    ranks' meetings (where commands are applied and losses averaged); ``health_every``
    (16, or ``optitui run --health-every``; 0: off) between measurements of every
    group's gradient and update norms; ``health_copy_gb`` (1) the most a measurement
    copies of the parameters (above it each group's update ratio is a sample's).
    """
    for hook in list(WATCH_HOOKS):
        found = hook(optimizer)
        if found is not None:
            return found
    for p in PROBES.open_probes():
        if p.optimizer is optimizer:
            return p
    if scheduler is None:  # one left unheld would compound every lr edit
        scheduler = find_scheduler(optimizer)
    return Probe(
        optimizer,
        model,
        scheduler=scheduler,
        run_dir=run_dir,
        root=root,
        name=name,
        flush_every=flush_every,
        on_stop=on_stop,
        max_steps=max_steps,
        on_divergence=on_divergence,
        sync_every=sync_every,
        health_every=health_every,
        health_copy_gb=health_copy_gb,
    )
