"""The LR range test on the live job, leaving the run exactly as it was.

It snapshots what it will touch to host memory (or to a file in the run
directory), sweeps the lr over its own iterator of the training data using the
job's own step (loss_fn or step_fn, accumulation, clipping), and restores the
snapshot afterwards, also when cancelled or when a step fails. The main
loop's data iterator is never touched; the RNG states are put back, so the
run continues as if the test had not run.

Sweeping all groups keeps their ratios: a reference group goes from start to
end lr and the others follow by the same factor. Applying a suggestion scales
every group by that factor through the same scheduler-aware path as a manual
edit; a single-group test sets that group's lr.
"""

from __future__ import annotations

import math
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from optitui.lrfind import Smoother, StopRule, SweepConfig, factor, suggest_all
from optitui.store.commands import Command
from optitui.store.layout import RunPaths
from optitui.store.records import Event, RangeTestUpdate
from optitui.trainer.control.groups import Rejection, resolve_groups
from optitui.trainer.core import footprint, state
from optitui.trainer.core.lr import read_lr, write_lr
from optitui.trainer.core.training import Training


class Sweepable(Training, Protocol):
    """What the range test runs on: the job's own step, and the queue it watches for a
    cancel or a stop while it sweeps."""

    paths: RunPaths
    commands: deque[Command]

    def gradients(
        self, next_batch: Callable[[], Any]
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def optimizer_step(self) -> torch.Tensor | float: ...

    def mean(self, value: torch.Tensor) -> float: ...

    def agree(self, flag: bool) -> bool: ...

    def stopping(self) -> bool: ...

    def request_stop(self, reason: str) -> None: ...


DEFAULTS: dict[str, Any] = {"start_lr": 1e-7, "end_lr": 10.0, "num_iter": 100}
PUBLISH_EVERY_S = 0.2


class RangeTestError(ValueError):
    """A range test that cannot start; nothing was changed."""


@dataclass
class RangeTest:
    id: str
    config: SweepConfig
    targets: list[int]  # the groups swept
    ref: int  # the group whose lr is the curve's x-axis
    single: bool
    to_disk: bool
    step: int
    base: list[float] = field(default_factory=list)  # every group's lr when it started
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    message: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            **self.config.to_dict(),
            "groups": self.targets,
            "ref": self.ref,
            "single_group": self.single,
            "to_disk": self.to_disk,
            "base_lrs": self.base,
        }

    def record(self) -> RangeTestUpdate:
        return RangeTestUpdate(
            self.id,
            self.step,
            self.status,
            self.describe(),
            {"lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed},
            self.suggestions if self.status != "running" else None,
            self.message,
        )

    def suggested(self, rule: str) -> dict[str, Any]:
        for s in self.suggestions:
            if s["rule"] == rule:
                return s
        raise RangeTestError(f"range test {self.id} has no {rule!r} suggestion")


def prepare(trainer: Training, test_id: str, args: dict[str, Any]) -> RangeTest:
    """Check a request and fix its groups and config (raises RangeTestError)."""
    sweep: dict[str, Any] = {
        k: args[k]
        for k in ("start_lr", "end_lr", "num_iter", "mode", "smooth_f", "diverge_th")
        if k in args
    }
    try:
        config = SweepConfig(**(DEFAULTS | sweep))
    except ValueError as exc:
        raise RangeTestError(str(exc)) from None
    groups = trainer.optimizer.param_groups
    single = args.get("group") is not None
    try:
        targets = resolve_groups(trainer, args.get("group"))
    except Rejection as exc:
        raise RangeTestError(str(exc)) from None
    live = [i for i in targets if read_lr(groups[i]) > 0]
    if not live:
        raise RangeTestError("every swept group has lr 0; the sweep keeps ratios, so set an lr")
    return RangeTest(
        test_id,
        config,
        targets,
        live[0],
        single,
        bool(args.get("to_disk")),
        trainer.step,
        base=[read_lr(g) for g in groups],
    )


class Snapshotting(Protocol):
    """Work on the live job that puts it back afterwards (a range test, a race)."""

    to_disk: bool


def take_snapshot(
    trainer: Training, test: Snapshotting, disk: Path
) -> tuple[dict[str, Any] | None, str]:
    """What the test restores afterwards: in host memory, or written to ``disk`` (asked
    for, or a state over ``Job.snapshot_limit_gb``) without a host copy of the whole.
    Returns the snapshot (None when on disk) and what it costs, said."""
    size = footprint.measure(trainer.model, trainer.optimizer)
    if not test.to_disk and size.total > trainer.job.snapshot_limit_gb * 1e9:
        test.to_disk = True
        where = (
            f"over snapshot_limit_gb={trainer.job.snapshot_limit_gb:g}, so written to {disk.name}"
        )
    else:
        where = f"written to {disk.name}" if test.to_disk else "kept in host memory"
    said = f"snapshot: {size.describe()}, {where}"
    if not test.to_disk:
        return state.capture(trainer, data=False), said
    # the live tensors, written one at a time: never the whole state twice in memory
    _save_new(state.capture(trainer, data=False, copy=False), disk)
    return None, said


def load_snapshot(disk: Path) -> dict[str, Any]:
    """A snapshot written by :func:`take_snapshot`, mapped from the file rather than read
    whole into host memory; the file is removed. Only the regular file the test wrote is
    read, never something a link points at."""
    if not stat.S_ISREG(os.lstat(disk).st_mode):
        raise RangeTestError(f"{disk.name} is not the snapshot file the test wrote")
    snap: dict[str, Any] = torch.load(disk, map_location="cpu", weights_only=True, mmap=True)
    disk.unlink(missing_ok=True)  # the mapping keeps the data until the restore is done
    return snap


def batches(trainer: Training) -> Iterator[Any]:
    """The test's own pass(es) over the training data; the main iterator is not touched."""
    while True:
        n = 0
        for batch in trainer.job.train_data:
            n += 1
            yield batch
        if n == 0:
            raise RangeTestError("train_data yielded no batches")


def cancel_requested(trainer: Sweepable, cancel: str = "lr-find-cancel") -> str | None:
    """Take a pending ``cancel`` or stop from the command queue (others wait)."""
    from optitui.store.records import Outcome

    for cmd in list(trainer.commands):
        if cmd.kind in (cancel, "stop"):
            trainer.commands.remove(cmd)
            if cmd.kind == "stop":
                trainer.request_stop("stop command")
            trainer.recorder.put(Outcome(cmd.id, cmd.kind, cmd.raw, True, trainer.step))
            return cmd.kind
    return None


#: the range test's snapshot file in the run directory (``to_disk=true``), by test id
DISK_PREFIX = ".lrfind-"


def _save_new(snap: dict[str, Any], path: Path) -> None:
    """``torch.save`` into a file made here (``O_EXCL``, ``O_NOFOLLOW``): never through a
    link, never over a file that is there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        torch.save(snap, f)


def run(trainer: Sweepable, test: RangeTest) -> RangeTest:
    """Sweep, then restore everything. Never raises for a failing step: it is reported."""
    rec = trainer.recorder
    disk = trainer.paths.root / f"{DISK_PREFIX}{test.id}.pt"
    snap, said = take_snapshot(trainer, test, disk)
    rec.put(
        Event(
            test.step,
            "lr-find",
            f"range test {test.id} started; {said}",
            {"marker": "lr-find", "id": test.id},
        )
    )
    groups = trainer.optimizer.param_groups
    cfg = test.config
    smoother = Smoother.from_config(cfg)
    stop = StopRule(cfg)
    last_publish = 0.0
    data = batches(trainer)
    was_training = trainer.model.training
    trainer.model.train()
    try:
        for it in range(cfg.num_iter):
            asked = cancel_requested(trainer) is not None
            # a stop (a command, SIGTERM, Ctrl+C) ends the test at once: state restored,
            # the run stops at its next boundary
            if trainer.agree(asked or trainer.stopping()):
                why = "the run is stopping" if trainer.stopping() else "cancelled"
                test.status, test.message = "cancelled", f"{why} after {it} iterations"
                break
            ref_lr = factor(cfg, it, test.base[test.ref])
            m = ref_lr / test.base[test.ref]
            loss, _ = trainer.gradients(lambda: next(data))
            # set after the job's own step: a step_fn that writes the lr keeps its
            # multipliers on the groups not swept, and the sweep's lr wins on the others
            trainer.lr.notice_writes()
            for g in test.targets:
                write_lr(groups[g], ref_lr if g == test.ref else test.base[g] * m)
            trainer.lr.remember()
            trainer.optimizer_step()  # through the GradScaler under fp16, as training does
            value = trainer.mean(loss)  # one read per iteration: the stop rule needs it now
            smoothed = smoother.update(value)
            test.lrs.append(ref_lr)
            test.losses.append(value)
            test.smoothed.append(smoothed)
            if time.monotonic() - last_publish > PUBLISH_EVERY_S:
                rec.put(test.record())
                last_publish = time.monotonic()
            reason = stop.update(value, smoothed)
            if reason is not None:
                test.status, test.message = "done", f"stopped early: {reason}"
                break
        else:
            test.status = "done"
    except Exception as exc:  # a failing step: report it, restore, train on
        test.status, test.message = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        if snap is None:
            snap = load_snapshot(disk)
        state.restore(trainer, snap, data=False)
        trainer.model.train(was_training)
    if test.status == "done":
        raw = [x if math.isfinite(x) else math.nan for x in test.losses]
        found = suggest_all(test.lrs, test.smoothed, cfg, raw_losses=raw)
        test.suggestions = [
            {
                "rule": s.rule,
                "lr": s.lr,
                "index": s.index,
                "note": s.note,
                "factor": None if s.lr is None else s.lr / test.base[test.ref],
            }
            for s in found
        ]
    rec.put(test.record())
    summary = ", ".join(
        f"{s['rule']} {s['lr']:.3g}" for s in test.suggestions if s["lr"] is not None
    )
    rec.put(
        Event(
            test.step,
            "lr-find",
            f"range test {test.id} {test.status}"
            + (f": {test.message}" if test.message else "")
            + (f"; suggestions: {summary}" if summary else ""),
            {"marker": "lr-find", "id": test.id, "status": test.status},
        )
    )
    return test
