"""Running a race at a step boundary, and putting everything back.

The range test's machinery is the race's: the snapshot of what it touches (host
memory, or a file when asked or too big), its own iterator over the training data
(the main loop's position is never touched), cancel and stop between steps, and an
exact restore. Each candidate starts from that snapshot with the same RNG states, so
it draws the same batches in the same order and the same dropout masks; it trains
``steps`` steps the way the loop does (the job's step, the scheduler, lookahead);
with ``val`` it ends with a validation pass over the first batches of val_data, the
same batches for every candidate (generators val_data keeps are set back before each
pass and after the race, so the run's own validation reads what it would have).
A candidate whose loss blows up (the range test's stop rule) ends as diverged; the
others go on. Under torch.distributed every rank runs every candidate and the curves
are the mean over ranks (one read per step, as the range test's).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from optitui.lrfind import Smoother, StopRule, SweepConfig
from optitui.store.candidates import CURRENT, Candidate
from optitui.store.race_results import (
    CANCELLED,
    DIVERGED,
    DONE,
    RUNNING,
    SMOOTH_F,
    WAITING,
    rank,
)
from optitui.store.records import Event, RaceUpdate
from optitui.trainer.control import rangetest
from optitui.trainer.control.ramps import Ramp
from optitui.trainer.core import state
from optitui.trainer.core.device import to_device


class Racing(rangetest.Sweepable, Protocol):
    """What a race runs on besides the range test's needs: an optimizer swap (a candidate
    trains with another class, and the job's own comes back), the ramps it holds, and
    the job's loss for the validation pass."""

    _ramps: list[Ramp]

    def swap_optimizer(self, new: torch.optim.Optimizer) -> None: ...

    def _loss(self, batch: Any) -> torch.Tensor: ...


#: applies an edit (``set``, ``scale-lr``, ``swap-optimizer``) the way the command does
Edit = Callable[[Any, str, dict[str, Any]], object]

PUBLISH_EVERY_S = 0.2
#: steps per candidate when the command does not say
DEFAULT_STEPS = 50
#: batches of val_data in each candidate's validation pass (the same ones for all)
VAL_BATCHES = 20


@dataclass
class Race:
    """One race: what it tries, and how each candidate did so far."""

    id: str
    candidates: list[Candidate]  # the alternatives; candidate 0 is the current settings
    steps: int
    val: bool
    group: int | str | None
    step: int  # the training step it ran at
    to_disk: bool = False  # where the snapshot went (rangetest.take_snapshot decides)
    status: str = "running"
    message: str | None = None
    said: str = ""  # the snapshot's size and place
    losses: list[list[float]] = field(default_factory=list)
    smoothed: list[list[float]] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    notes: list[str | None] = field(default_factory=list)  # why a candidate ended early
    val_losses: list[float | None] = field(default_factory=list)
    seconds: dict[str, Any] = field(default_factory=dict)  # snapshot, restore, candidates
    started: float = 0.0  # wall time
    results: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        k = len(self.texts)
        self.losses, self.smoothed = [[] for _ in range(k)], [[] for _ in range(k)]
        self.states, self.notes = [WAITING] * k, [None] * k
        self.val_losses = [None] * k
        self.seconds = {"snapshot": 0.0, "restore": 0.0, "candidates": []}

    @property
    def texts(self) -> list[str]:
        return [CURRENT, *(c.text for c in self.candidates)]

    def edit(self, n: int) -> tuple[str, dict[str, Any]] | None:
        """Candidate ``n`` as the command a person would type for it (None: current)."""
        return None if n == 0 else as_edit(self.candidates[n - 1], self.group)

    def record(self) -> RaceUpdate:
        return RaceUpdate(
            self.id,
            self.step,
            self.status,
            {
                "steps": self.steps,
                "val": self.val,
                "val_batches": VAL_BATCHES if self.val else 0,
                "group": self.group,
                "candidates": self.texts,
                "snapshot": self.said,
            },
            {
                "losses": self.losses,
                "smoothed": self.smoothed,
                "states": self.states,
                "notes": self.notes,
                "val": self.val_losses,
                "seconds": self.seconds,
                "started": self.started,
            },
            self.results if self.status != "running" else None,
            self.message,
        )


def as_edit(c: Candidate, group: int | str | None) -> tuple[str, dict[str, Any]]:
    """The command a candidate reads like, with its arguments (a swap takes no group:
    it builds every group anew)."""
    if c.form == "scale":
        return "scale-lr", {"factor": c.factor, "group": group}
    if c.form == "set":
        return "set", {"values": dict(c.values), "group": group}
    return "swap-optimizer", {"name": c.optimizer, "values": dict(c.values)}


def run(trainer: Racing, race: Race, apply_edit: Edit) -> Race:
    """Every candidate in turn (``apply_edit`` applies each as its command would), then
    everything put back. Never raises for a failing step: the race is reported failed
    and the run goes on."""
    rec = trainer.recorder
    disk = trainer.paths.root / f"{rangetest.DISK_PREFIX}{race.id}.pt"
    race.started = time.time()
    t0 = time.perf_counter()
    snap, race.said = rangetest.take_snapshot(trainer, race, disk)
    race.seconds["snapshot"] = time.perf_counter() - t0
    n = len(race.texts)
    rec.put(
        Event(
            race.step,
            "race",
            f"race {race.id} started: {n} candidates x {race.steps} steps; {race.said}",
            {"marker": "race", "id": race.id},
        )
    )
    rec.put(race.record())
    original, held = trainer.optimizer, list(trainer._ramps)  # ramps wait for the race
    on_change, trainer.lr.on_change = trainer.lr.on_change, None  # no group records meanwhile
    was_training = trainer.model.training
    val_rng = _val_rng(trainer) if race.val else []
    try:
        for i in range(n):
            if i > 0:
                snap = _put_back(trainer, race, snap, disk, original)
            edit = race.edit(i)
            if edit is not None:
                apply_edit(trainer, *edit)  # the path of the command typed by hand
            if not _candidate(trainer, race, i, val_rng):
                break
        else:
            race.status = "done"
    except Exception as exc:  # a failing step or edit: report it, restore, train on
        race.status, race.message = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        _put_back(trainer, race, snap, disk, original)
        _set_val_rng(val_rng)
        trainer._ramps = held
        trainer.lr.on_change = on_change
        trainer.model.train(was_training)
    race.results = rank(
        race.texts, race.losses, race.smoothed, race.states, race.val_losses, race.steps
    )
    rec.put(race.record())
    best = next((r for r in race.results if r["final"] is not None), None)
    said = f"; best: {best['text']}" if best is not None and race.status == "done" else ""
    rec.put(
        Event(
            race.step,
            "race",
            f"race {race.id} {race.status}"
            + (f": {race.message}" if race.message else "")
            + said
            + f" ({_cost(race)})",
            {"marker": "race", "id": race.id, "status": race.status},
        )
    )
    return race


def _cost(race: Race) -> str:
    s = race.seconds
    run_s = sum(s["candidates"])
    return f"{run_s:.2f} s racing, snapshot {s['snapshot']:.3f} s, restores {s['restore']:.3f} s"


def _put_back(
    trainer: Racing,
    race: Race,
    snap: dict[str, Any] | None,
    disk: Any,
    original: torch.optim.Optimizer,
) -> dict[str, Any]:
    """The state at the race's start again: the job's own optimizer object (a swap
    candidate trained with another), then the snapshot. A snapshot on disk is mapped
    once and kept for the next restores."""
    t0 = time.perf_counter()
    if trainer.optimizer is not original:
        trainer.swap_optimizer(original)
    if snap is None:
        snap = rangetest.load_snapshot(disk)
    state.restore(trainer, snap, data=False)
    race.seconds["restore"] += time.perf_counter() - t0
    return snap


def _val_rng(trainer: Racing) -> list[tuple[torch.Generator, torch.Tensor]]:
    """The generators val_data keeps (a shuffling loader's, random windows'), with their
    states now."""
    val = trainer.job.val_data
    return [(g, g.get_state()) for g in state.data_generators(val)] if val is not None else []


def _set_val_rng(val_rng: list[tuple[torch.Generator, torch.Tensor]]) -> None:
    for g, saved in val_rng:
        g.set_state(saved)


def _candidate(
    trainer: Racing, race: Race, i: int, val_rng: list[tuple[torch.Generator, torch.Tensor]]
) -> bool:
    """Train candidate ``i`` (already applied) for ``race.steps`` steps; False when the
    race is cancelled or the run is stopping."""
    race.states[i] = RUNNING
    smoother = Smoother(SMOOTH_F)
    stop = StopRule(SweepConfig(smooth_f=SMOOTH_F))  # its divergence rule alone
    data = rangetest.batches(trainer)  # made now: the RNG states are the snapshot's
    trainer.model.train()
    last_publish = t0 = time.perf_counter()
    try:
        for it in range(race.steps):
            asked = rangetest.cancel_requested(trainer, "race-cancel") is not None
            if trainer.agree(asked or trainer.stopping()):
                why = "the run is stopping" if trainer.stopping() else "cancelled"
                race.status = "cancelled"
                race.message = f"{why} in candidate {i} ({race.texts[i]}) after {it} steps"
                race.states[i] = CANCELLED
                return False
            loss, _ = trainer.gradients(lambda: next(data))
            trainer.lr.notice_writes()
            trainer.optimizer_step()
            if trainer.lookahead is not None:
                trainer.lookahead.after_step()
            if trainer.job.scheduler_interval == "step":
                trainer.lr.step_scheduler()
            value = trainer.mean(loss)  # the divergence rule needs it now, on every rank
            smoothed = smoother.update(value)
            race.losses[i].append(value)
            race.smoothed[i].append(smoothed)
            reason = stop.update(value, smoothed)
            if reason is not None:
                race.states[i], race.notes[i] = DIVERGED, reason
                break
            if time.perf_counter() - last_publish > PUBLISH_EVERY_S:
                trainer.recorder.put(race.record())
                last_publish = time.perf_counter()
        else:
            race.states[i] = DONE
    finally:
        race.seconds["candidates"].append(time.perf_counter() - t0)
    if race.val and race.states[i] == DONE:
        _set_val_rng(val_rng)  # the same batches as every other candidate's pass
        race.val_losses[i] = _val_loss(trainer)
    trainer.recorder.put(race.record())
    return True


def _val_loss(trainer: Racing) -> float:
    """The mean loss over the first VAL_BATCHES batches of val_data (over ranks)."""
    assert trainer.job.val_data is not None
    trainer.model.eval()
    total = torch.zeros((), device=trainer.device)
    n = 0
    with torch.no_grad():
        for batch in itertools.islice(trainer.job.val_data, VAL_BATCHES):
            total += trainer._loss(to_device(batch, trainer.device)).detach().float()
            n += 1
    trainer.model.train()
    return trainer.mean(total / n) if n else math.nan
