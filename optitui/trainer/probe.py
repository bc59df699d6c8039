"""Own training loops: ``probe = optitui.watch(optimizer, model=model)``, ``probe.step(loss)``.

The probe is a :class:`~optitui.trainer.loop.Trainer` whose loop is the user's.
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
  it, an lr edit lasts until the user's scheduler next writes the lr.
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
- ``probe.step(loss, samples=n)`` gives the dashboard samples/s;
  ``probe.val_loss(v)`` records a validation loss; ``probe.epoch = e`` the epoch.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from optitui.lrfind import Smoother, factor, should_stop, suggest_all
from optitui.store.commands import Command
from optitui.store.layout import RunPaths, create_run_dir
from optitui.store.records import Event, GroupSnapshot, Outcome, ValRecord
from optitui.trainer import checkpoint, control, rangetest, state, surgery
from optitui.trainer.job import Job
from optitui.trainer.loop import Trainer
from optitui.trainer.lr import read_lr, write_lr

#: the run directory ``optitui run SCRIPT`` gives a script without setup(); the first
#: ``watch()`` in the process uses it (and takes it out of the environment)
ENV_RUN_DIR = "OPTITUI_RUN_DIR"
OnStop = Literal["flag", "raise"]


class StopTraining(Exception):
    """Raised by ``probe.step()`` when the run was asked to stop and the loop goes on.

    ``optitui run`` treats it as a clean stop. A script run with plain ``python``
    may catch it (``except optitui.StopTraining``) or check ``probe.should_stop``.
    """


class CheckpointBackend(Protocol):
    """A framework's own checkpoint format (Lightning, HF), used for save and restore."""

    def save(self, reason: str, tag: str | None) -> str:
        """Save (now or at the end of this step); return the checkpoint's id."""
        ...

    def restore(self, ref: str) -> str:
        """Load a checkpoint into the model, optimizer and scheduler; return its id.
        Raises CheckpointError when it cannot, leaving everything as it was."""
        ...


def dist_rank() -> tuple[int, int]:
    """(rank, world size) under torch.distributed, else (0, 1)."""
    d = torch.distributed
    if d.is_available() and d.is_initialized():
        return d.get_rank(), d.get_world_size()
    return 0, 1


def _user_loop(model: nn.Module, batch: Any) -> torch.Tensor:
    raise RuntimeError("the probe's loop is the user's; it never computes a loss itself")


class _ParamsOnly(nn.Module):
    """The optimizer's tensors as a module, for checkpoints when no model was given."""

    def __init__(self, optimizer: Optimizer) -> None:
        super().__init__()
        for i, g in enumerate(optimizer.param_groups):
            for j, p in enumerate(g["params"]):
                if isinstance(p, nn.Parameter):
                    self.register_parameter(f"group{i}_param{j}", p)
                else:  # a plain leaf tensor: kept (and restored in place) as a buffer
                    self.register_buffer(f"group{i}_param{j}", p)


class LoopTrainer(Trainer):
    """The trainer behind a probe: commands, records and checkpoints, no loop of its own."""

    def __init__(
        self,
        probe: Probe,
        job: Job,
        device: torch.device,
        paths: RunPaths,
        *,
        meta: dict[str, Any],
        flush_every: int,
        flush_seconds: float,
        max_steps: int | None,
    ) -> None:
        self.probe = probe
        super().__init__(
            job,
            device,
            paths,
            meta=meta,
            flush_every=flush_every,
            flush_seconds=flush_seconds,
            max_steps=max_steps,
        )

    def run(self) -> str:
        raise RuntimeError("a probe's loop is the user's: call probe.step(loss) in it")

    def _start(self) -> None:
        # Trainer._start puts the model in train mode; the user's loop decides that here
        modes = [m.training for m in self.model.modules()]
        super()._start()
        for m, mode in zip(self.model.modules(), modes, strict=True):
            m.training = mode

    def _set_state(self, state: str, message: str | None = None) -> None:
        if self.probe._flight is not None and state in ("running", "paused"):
            state, message = "lr-find", None  # the test goes on over the loop's next steps
        super()._set_state(state, message)

    def _next_batch(self) -> Any:
        return None  # a divergence rollback cannot skip batches of a loop it does not own

    def swap_optimizer(self, new: Optimizer) -> None:
        raise surgery.SurgeryError(
            "swap-optimizer needs a script with setup(): your loop holds its optimizer object"
        )

    def run_range_test(self, test: rangetest.RangeTest) -> rangetest.RangeTest:
        self.pending_test = None
        self.probe._start_test(test)
        return test

    def save_checkpoint(self, reason: str, tag: str | None = None) -> str:
        backend = self.probe.backend
        if backend is None:
            return super().save_checkpoint(reason, tag)
        cid = backend.save(reason, tag)
        if self.saver is not None:  # the periodic policy counts from here
            self.saver._last_save_step, self.saver._last_save_time = self.step, time.time()
            self._ckpt_at = self.saver.next_due_step()
        return cid

    def _apply_commands(self) -> None:
        """As the trainer does, except what the probe answers itself: every command while
        the ranks cannot share it, and restore when a framework owns the checkpoints."""
        probe = self.probe
        if probe.refuse is None and probe.backend is None:
            super()._apply_commands()
            return
        inbox, batch = self.commands, deque[Command]()
        try:
            while inbox:
                cmd = inbox.popleft()
                if probe.refuse is None and (probe.backend is None or cmd.kind != "restore"):
                    batch.append(cmd)
                    continue
                self.commands = batch  # what came before it is applied first
                super()._apply_commands()
                batch = deque()
                self.commands = inbox
                self._answer_here(cmd)
            self.commands = batch
            super()._apply_commands()
        finally:
            self.commands = inbox

    def _answer_here(self, cmd: Command) -> None:
        probe, what = self.probe, control.describe(cmd)
        try:
            if probe.refuse is not None:
                raise control.Rejection(probe.refuse)
            assert probe.backend is not None
            self.flush()
            old = self.step
            cid = probe.backend.restore(str(cmd.args["id"]))
        except Exception as exc:  # every command is answered; the backends check first
            if not isinstance(exc, control.Rejection | checkpoint.CheckpointError):
                exc = checkpoint.CheckpointError(f"restore failed: {type(exc).__name__}: {exc}")
            self.recorder.put(Outcome(cmd.id, cmd.kind, cmd.raw, False, self.step, str(exc)))
            self.recorder.put(Event(self.step, "command", f"{what}: rejected: {exc}"))
            return
        # what changed is on record before the answer, as the trainer does it
        self.recorder.put(GroupSnapshot(self.step, self.group_snapshot()))
        self.publish_controls()
        self.recorder.put(Outcome(cmd.id, cmd.kind, cmd.raw, True, self.step))
        self.recorder.put(
            Event(
                self.step,
                "checkpoint",
                f"restored {cid} (model, optimizer, scheduler); the loop goes on from step {old}",
                {"marker": "restore", "id": cid, "from_step": old, "to_step": self.step},
            )
        )


@dataclass
class _Flight:
    """A range test running over the user's own steps."""

    test: rangetest.RangeTest
    snap: dict[str, Any] | None
    disk: Path
    smoother: Smoother
    lrs: list[float] = field(default_factory=list)  # what each group was set to for this step
    it: int = 0
    best: float = math.inf
    published: float = 0.0


_OPEN: list[Probe] = []
_MADE: list[Probe] = []
_LOCK = threading.Lock()
_SCRIPT_META: dict[str, Any] = {}
_SCRIPT_DEFAULTS: dict[str, Any] = {}
#: called by watch() before it makes a probe: zero-code mode steps aside (and hands over a
#: probe it already made for that optimizer)
WATCH_HOOKS: list[Callable[[Optimizer], Probe | None]] = []
_installed = False


def set_script_meta(
    meta: dict[str, Any], *, max_steps: int | None = None, on_divergence: str | None = None
) -> None:
    """What ``optitui run`` gives the probe that uses :data:`ENV_RUN_DIR`: metadata, and
    its --max-steps and --on-divergence (unless the script's watch() call sets them)."""
    _SCRIPT_META.clear()
    _SCRIPT_META.update(meta)
    _SCRIPT_DEFAULTS.clear()
    _SCRIPT_DEFAULTS.update(max_steps=max_steps, on_divergence=on_divergence)


def open_probes() -> list[Probe]:
    """Probes not closed yet."""
    with _LOCK:
        return list(_OPEN)


def made_probes() -> list[Probe]:
    """Every probe this process made that serves a store, in order."""
    with _LOCK:
        return list(_MADE)


def _close_all(error: BaseException | None = None) -> None:
    for p in open_probes():
        with contextlib.suppress(Exception):
            p.close(error)


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    _close_all(exc)
    _previous_hook(kind, exc, tb)


_previous_hook = sys.excepthook


def _install_exit_handlers() -> None:
    """A script that never closes its probe still ends its run: failed or finished."""
    global _installed, _previous_hook
    if _installed:
        return
    _installed = True
    _previous_hook = sys.excepthook
    sys.excepthook = _excepthook
    atexit.register(_close_all)


def _loss_device(optimizer: Optimizer) -> torch.device:
    for g in optimizer.param_groups:
        for p in g["params"]:
            return torch.device(p.device)
    return torch.device("cpu")


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
        #: why every command is refused here (a distributed run whose ranks cannot share them)
        self.refuse: str | None = None
        self._closed = False
        self._stop_seen = False
        self._lr_used: list[Any] | None = None
        self._norm: torch.Tensor | None = None
        self._flight: _Flight | None = None
        self._hooks: list[Any] = []
        self._sched_class: type | None = None
        self._device = _loss_device(optimizer)
        self.rank, self.world = dist_rank()
        #: ranks other than 0 record nothing and make no store (rank 0 writes it)
        self.silent = self.rank != 0
        self.trainer: LoopTrainer | None = None
        if self.silent:
            return
        limits = list(limits)
        if self.world > 1:
            self.refuse = (
                f"this run has {self.world} ranks and commands are not passed between "
                "them yet; rank 0 only records"
            )
            limits.append(self.refuse)
        _check_scheduler(optimizer, scheduler)
        env_dir = None
        if run_dir is None:
            env_dir = os.environ.pop(ENV_RUN_DIR, None)
        if env_dir is not None:  # optitui run's options, unless the call gave its own
            max_steps = max_steps if max_steps is not None else _SCRIPT_DEFAULTS.get("max_steps")
            on_divergence = on_divergence or _SCRIPT_DEFAULTS.get("on_divergence")
        job = Job(
            model=model if model is not None else _ParamsOnly(optimizer),
            optimizer=optimizer,
            train_data=(),
            step_fn=_user_loop,
            on_divergence=on_divergence or "pause",
        )
        job.validate()
        script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
        extra: dict[str, Any] = {
            "script": None if script is None else str(script),
            "argv": list(sys.argv),
            "mode": "in-process",
            **(dict(_SCRIPT_META) if env_dir is not None else {}),
            **(meta or {}),
            "scheduler": None if scheduler is None else type(scheduler).__name__,
            "world_size": self.world,
            "probe": {"mode": mode, "limits": limits},
        }
        stem = name or (script.stem if script is not None else "run")
        paths = create_run_dir(root, stem, run_dir if run_dir is not None else env_dir)
        self.trainer = LoopTrainer(
            self,
            job,
            self._device,
            paths,
            meta=extra,
            flush_every=flush_every,
            flush_seconds=flush_seconds,
            max_steps=max_steps,
        )
        t = self.trainer
        # the scheduler is checked above against the optimizer's groups, not its identity
        # (frameworks wrap optimizers); the trainer's Job saw none so it never steps it
        job.scheduler = scheduler
        t.lr.scheduler = scheduler
        t.step = first_step
        if scheduler is not None:
            self._wrap_scheduler(scheduler)
        if hooks:
            self._hooks.append(optimizer.register_step_pre_hook(self._pre_hook))
        t._start()
        with _LOCK:
            _OPEN.append(self)
            _MADE.append(self)
        _install_exit_handlers()
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

    def before_step(self) -> None:
        """Called just before ``optimizer.step()`` (the probe's pre-hook does it): takes the
        lr the step will use and clips the gradients when the run clips."""
        t = self.trainer
        if t is None:
            return
        groups = t.optimizer.param_groups
        self._lr_used = [g["lr"] for g in groups]
        if t.clip is not None:
            params = [p for g in groups for p in g["params"]]
            self._norm = torch.nn.utils.clip_grad_norm_(params, t.clip)

    def _pre_hook(self, opt: Optimizer, args: Any, kwargs: Any) -> None:
        self.before_step()

    def step(self, loss: torch.Tensor | float | None = None, samples: int | None = None) -> None:
        """The step boundary, once per iteration after ``optimizer.step()``.

        Records the loss without reading it, applies pending commands, blocks while
        paused. Raises StopTraining when stopping and the loop ignored ``should_stop``
        (or at once with ``on_stop="raise"``). ``samples`` (the batch size) gives the
        dashboard its samples/s; it is kept until given again."""
        t = self.trainer
        if t is None:
            return
        if self._closed:
            raise RuntimeError("this probe is closed")
        if samples is not None:
            t._batch_samples = int(samples)  # counted at each flush, as the trainer does
        ignored = self._stop_seen
        if self._flight is not None:
            self._test_step(loss)
        else:
            self._record(t, loss)
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
        t._last_val = float(value)
        t.recorder.put(ValRecord(t.step, t.epoch, float(value)))

    def _as_tensor(self, loss: torch.Tensor | float | None) -> torch.Tensor:
        if isinstance(loss, torch.Tensor):
            d = loss.detach()
            self._device = d.device
            if d.dim():
                if d.numel() != 1:
                    raise ValueError(f"probe.step: the loss must be a scalar, got {tuple(d.shape)}")
                d = d.reshape(())
            return d
        value = math.nan if loss is None else float(loss)
        return torch.tensor(value, device=self._device)

    def _record(self, t: LoopTrainer, loss: torch.Tensor | float | None) -> None:
        """The hot path: device tensors and host floats into buffers, nothing read back."""
        lrs = self._lr_used
        if lrs is None:
            lrs = [g["lr"] for g in t.optimizer.param_groups]
        self._lr_used = None
        if t.lookahead is not None:
            t.lookahead.after_step()
        t._buf_loss.append(self._as_tensor(loss))
        t._buf_lr.append(lrs)
        t._buf_time.append(time.time())
        t._buf_epoch.append(t.epoch)
        if self._norm is not None:
            t._buf_gn.append(self._norm)
            self._norm = None
        t.step += 1
        if t._budget:
            t._budget -= 1
        if t.step >= t._ckpt_at:
            t.save_checkpoint("periodic")
        if len(t._buf_loss) >= t.flush_every or (
            t._buf_time[-1] - t._last_flush[0] >= t.flush_seconds
        ):
            t.flush(check=True)

    def _boundary(self) -> None:
        """Ramps and commands, then wait while paused (a range test in flight runs first)."""
        t = self.trainer
        assert t is not None
        if self._flight is None:
            if t._ramps:
                t._advance_ramps()
            if t.commands:
                t._apply_commands()
        while t._paused and not t._budget and t._stop_reason is None and self._flight is None:
            t._wait_while_paused()
            if t.commands:
                t._apply_commands()

    # -- the scheduler the user steps ---------------------------------------------------
    def _wrap_scheduler(self, scheduler: LRScheduler | ReduceLROnPlateau) -> None:
        base = type(scheduler)
        probe = self

        def step(sched: Any, *args: Any, **kwargs: Any) -> Any:
            return probe._scheduler_step(base.step, sched, *args, **kwargs)

        # a subclass for this one instance (its state_dict stays as it was)
        wrapped = type(
            base.__name__,
            (base,),
            {"step": step, "__module__": base.__module__, "__qualname__": base.__qualname__},
        )
        scheduler.__class__ = wrapped
        self._sched_class = base

    def _scheduler_step(
        self, step: Callable[..., Any], sched: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """The user's ``scheduler.step()``: the schedule sees the unscaled lr, the
        multipliers go back on after. Skipped while detached or while a range test runs."""
        t = self.trainer
        if t is None or self._closed:
            return step(sched, *args, **kwargs)
        lr = t.lr
        if self._flight is not None or not lr.attached:
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

    # -- the range test, in flight ----------------------------------------------------------
    def _start_test(self, test: rangetest.RangeTest) -> None:
        t = self.trainer
        assert t is not None
        t.flush()
        t._set_state("lr-find")
        snap: dict[str, Any] | None = state.capture(t, data=False)
        disk = t.paths.root / f".lrfind-{test.id}.pt"
        if test.to_disk:
            torch.save(snap, disk)
            snap = None
        t.recorder.put(
            Event(
                test.step,
                "lr-find",
                f"range test {test.id} started over the loop's next {test.config.num_iter} steps",
                {"marker": "lr-find", "id": test.id},
            )
        )
        self._flight = _Flight(test, snap, disk, Smoother.from_config(test.config))
        self._set_test_lr()

    def _set_test_lr(self) -> None:
        f, t = self._flight, self.trainer
        assert f is not None and t is not None
        test = f.test
        ref_lr = factor(test.config, f.it, test.base[test.ref])
        m = ref_lr / test.base[test.ref]
        groups = t.optimizer.param_groups
        for g in test.targets:
            write_lr(groups[g], ref_lr if g == test.ref else test.base[g] * m)
        f.lrs = [float(g["lr"]) for g in groups]

    def _test_step(self, loss: torch.Tensor | float | None) -> None:
        f, t = self._flight, self.trainer
        assert f is not None and t is not None
        test = f.test
        used, self._lr_used, self._norm = self._lr_used, None, None
        if rangetest._cancel_requested(t):
            self._end_test("cancelled", f"cancelled after {f.it} iterations")
            return
        if used is not None and any(
            not math.isclose(float(used[g]), f.lrs[g], rel_tol=1e-6) for g in test.targets
        ):
            self._end_test(
                "failed",
                "the lr was changed outside optitui during the test "
                "(a scheduler not given to optitui.watch(scheduler=...)?)",
            )
            return
        if loss is None:
            self._end_test("failed", "probe.step() was called without a loss")
            return
        # one read per test step: the stop rule needs the value now
        value = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        smoothed = f.smoother.update(value)
        f.best = min(f.best, smoothed)
        test.lrs.append(f.lrs[test.ref])
        test.losses.append(value)
        test.smoothed.append(smoothed)
        if time.monotonic() - f.published > rangetest.PUBLISH_EVERY_S:
            t.recorder.put(test.record())
            f.published = time.monotonic()
        reason = should_stop(smoothed, f.best, test.config.diverge_th)
        if reason is not None:
            self._end_test("done", f"stopped early: {reason}")
        elif f.it + 1 >= test.config.num_iter:
            self._end_test("done", None)
        else:
            f.it += 1
            self._set_test_lr()

    def _end_test(self, status: str, message: str | None) -> None:
        """Put everything back as it was at the start, then report like the trainer does."""
        f, t = self._flight, self.trainer
        assert f is not None and t is not None
        self._flight = None
        test = f.test
        test.status, test.message = status, message
        snap = f.snap
        if snap is None:
            snap = torch.load(f.disk, map_location="cpu", weights_only=True)
            f.disk.unlink(missing_ok=True)
        state.restore(t, snap, data=False)
        t._last_flush = (time.time(), t.step, t._samples)
        if status == "done":
            raw = [x if math.isfinite(x) else math.nan for x in test.losses]
            found = suggest_all(test.lrs, test.smoothed, test.config, raw_losses=raw)
            base = test.base[test.ref]
            test.suggestions = [
                {
                    "rule": s.rule,
                    "lr": s.lr,
                    "index": s.index,
                    "note": s.note,
                    "factor": None if s.lr is None else s.lr / base,
                }
                for s in found
            ]
        t.range_tests[test.id] = test
        t.recorder.put(test.record())
        summary = ", ".join(
            f"{s['rule']} {s['lr']:.3g}" for s in test.suggestions if s["lr"] is not None
        )
        t.recorder.put(
            Event(
                test.step,
                "lr-find",
                f"range test {test.id} {status}"
                + (f": {message}" if message else "")
                + (f"; suggestions: {summary}" if summary else "")
                + "; model and optimizer restored (the batches it used are consumed)",
                {"marker": "lr-find", "id": test.id, "status": status},
            )
        )
        t._set_state("paused" if t._paused and not t._budget else "running", t.pause_message)

    # -- the end ------------------------------------------------------------------------------
    def close(self, error: BaseException | None = None) -> None:
        """Flush the store and mark the run finished, stopped, or failed (with ``error``).
        Also done by the context manager, and at exit for a probe left open."""
        t = self.trainer
        if t is None or self._closed:
            return
        self._closed = True
        with _LOCK:
            if self in _OPEN:
                _OPEN.remove(self)
        try:
            if self._flight is not None:
                self._end_test("cancelled", "the run ended during the test")
        finally:
            for h in self._hooks:
                h.remove()
            self._hooks.clear()
            if self._sched_class is not None and self.scheduler is not None:
                self.scheduler.__class__ = self._sched_class
            final, message = "finished", self.stop_reason
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


def _check_scheduler(optimizer: Optimizer, scheduler: Any) -> None:
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
) -> Probe:
    """Serve a run store for a loop you wrote; call ``probe.step(loss)`` after each
    ``optimizer.step()``.

    ``model`` puts buffers (BatchNorm statistics) into checkpoints and range-test
    restores; without it only the optimizer's parameters are saved. ``scheduler``
    keeps live lr edits in the schedule's shape. The store goes to ``run_dir``, or
    the directory ``optitui run`` chose, or a new one under ``root``. Watching an
    optimizer that is already watched returns the same probe.
    """
    for hook in list(WATCH_HOOKS):
        found = hook(optimizer)
        if found is not None:
            return found
    for p in open_probes():
        if p.optimizer is optimizer:
            return p
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
    )
