"""The divergence guard: non-finite losses and loss spikes, found without a per-step sync.

It looks at the losses (and gradient norms, when clipping computes them) that
the trainer reads anyway at every flush, so detection comes within
``flush_every`` steps at no cost per step. On a non-finite value it follows
the run's policy:

- ``pause`` (default): stop stepping, say so loudly, wait for the user;
- ``rollback``: go back to the last good state (a finite checkpoint, or an
  in-memory snapshot the guard refreshes every ``snapshot_every`` steps),
  scale every group's lr by ``lr_factor``, skip the next ``skip`` batches;
- ``ignore``: record it and go on.

A spike (the smoothed loss above ``spike_factor`` times its recent level and well
outside its noise, :mod:`optitui.trainer.control.spikes`) is one warning event and a plot
marker per episode, whatever the policy.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from optitui.store.layout import RunPaths
from optitui.store.records import Event
from optitui.trainer.control.saver import Policy, Saver
from optitui.trainer.control.spikes import SpikeWatch
from optitui.trainer.core import checkpoint, footprint, state
from optitui.trainer.core.divergence import GuardPolicy as GuardPolicy
from optitui.trainer.core.training import Training

#: a GradScaler that skips this many steps in a row finds no scale that works: diverged
MAX_SKIPPED = 100


def _all_finite(values: list[float]) -> bool:
    """Whether every value is finite, in one C loop: a NaN or an infinity makes the sum
    one (finite values that overflow it do too; the caller then looks one by one)."""
    return math.isfinite(sum(values))


class Guarded(Training, Protocol):
    """What the guard reads of the run, and what it does to it: pause, or rewind to a
    good state, scale the lrs down and skip the batches that led there."""

    paths: RunPaths
    leader: bool
    saver: Saver | None
    policy: Policy
    expected_non_finite: checkpoint.Expected
    pause_message: str | None

    def agree(self, flag: bool) -> bool: ...

    def pause(self) -> None: ...

    def rewind(self, snap: dict[str, Any], cid: str) -> None: ...

    def next_batch(self) -> Any: ...

    def publish_groups(self) -> None: ...


class Guard:
    def __init__(self, trainer: Guarded, policy: GuardPolicy) -> None:
        self.trainer = trainer
        self.policy = policy
        self._spike_watch = SpikeWatch(policy.spike_factor)
        self.good: dict[str, Any] | None = None  # the last finite in-memory snapshot
        self.tripped = 0
        self._skip_run = 0  # steps the GradScaler skipped in a row

    def observe(
        self,
        steps: list[float],
        losses: list[float],
        norms: list[float] | None,
        skipped: list[float] | None = None,
    ) -> bool:
        """Look at one flushed batch; True when the guard acted (paused or rolled back).

        Steps a GradScaler skipped (``skipped``) changed nothing: their overflowed
        gradients are the scaler's business, not a divergence, unless it skips
        :data:`MAX_SKIPPED` steps in a row (then no scale makes them finite)."""
        if skipped is None and _all_finite(losses) and (norms is None or _all_finite(norms)):
            # the common batch, looked at without a Python loop over its steps
            self._spikes(list(zip(steps, losses, strict=True)))
            self._maybe_snapshot()
            return False
        keep = list(range(len(losses)))
        if skipped is not None:
            keep = [i for i in keep if not skipped[i]]
            for i, s in enumerate(skipped):
                self._skip_run = self._skip_run + 1 if s else 0
                if self._skip_run >= MAX_SKIPPED:
                    self._skip_run = 0
                    what = f"the GradScaler skipped {MAX_SKIPPED} steps in a row"
                    return self._diverged(int(steps[i]), losses[i], what)
        bad = next(
            (
                i
                for i in keep
                if not math.isfinite(losses[i])
                or (norms is not None and not math.isfinite(norms[i]))
            ),
            None,
        )
        self._spikes([(steps[i], losses[i]) for i in keep if bad is None or i < bad])
        if bad is not None:
            return self._diverged(int(steps[bad]), losses[bad])
        self._maybe_snapshot()
        return False

    def _spikes(self, points: list[tuple[float, float]]) -> None:
        """Warn once per spike episode (see :mod:`optitui.trainer.control.spikes`)."""
        self._spike_watch.factor = self.policy.spike_factor  # the policy may change live
        for spike in self._spike_watch.feed(points):
            self.trainer.recorder.put(
                Event(
                    spike.step,
                    "warning",
                    f"loss spike at step {spike.step}: the loss ({spike.loss:.4g}, median of "
                    f"the last steps) is over {self._spike_watch.factor:g}x its recent level "
                    f"{spike.level:.4g}",
                    {"marker": "spike"},
                )
            )

    def fits_in_memory(self) -> tuple[bool, footprint.Footprint]:
        """Whether the state is small enough for in-memory snapshots, and its size."""
        t = self.trainer
        size = footprint.measure(t.model, t.optimizer)
        return size.total <= t.job.snapshot_limit_gb * 1e9, size

    def announce(self) -> None:
        """Say what the rollback policy costs, or where it rolls back to (at the start of a
        run under it, and when a command switches to it)."""
        t = self.trainer
        if self.policy.action != "rollback":
            return
        fits, size = self.fits_in_memory()
        if fits:
            what = (
                f"divergence rollback: an in-memory snapshot every {self.policy.snapshot_every} "
                f"steps, {size.describe()}"
            )
        else:
            what = (
                f"divergence rollback: the state is {size.describe()}, over "
                f"snapshot_limit_gb={t.job.snapshot_limit_gb:g}: no in-memory snapshot, a "
                "rollback goes back to the newest finite checkpoint"
            )
            if t.policy.every is None and t.policy.minutes is None:
                what += " (none is saved periodically: set checkpoint_every)"
        t.recorder.put(Event(t.step, "info" if fits else "warning", what))

    def _maybe_snapshot(self) -> None:
        t = self.trainer
        if self.policy.action != "rollback":
            return
        at = -1 if self.good is None else int(self.good["step"])
        if t.step - at < self.policy.snapshot_every and self.good is not None:
            return
        fits, _ = self.fits_in_memory()
        if not fits:  # every refresh would copy the whole state to host memory
            self.good = None
            return
        snap = state.capture(t)
        if checkpoint.non_finite(snap, t.expected_non_finite) is None:
            self.good = snap

    def _last_good(self, before: int) -> tuple[dict[str, Any], str] | None:
        """The newest finite state before step ``before``. Under torch.distributed rank 0
        names the candidates from the manifests alone (no file is read while the other
        ranks wait), then every rank loads and checks them itself, and they take the
        first that every rank could load."""
        t = self.trainer
        if t.dist is None:
            return self._choose(before)
        from optitui.trainer.core import dist

        names = self._candidates(before) if t.leader else None
        for key in dist.broadcast_object(names, t.device):
            found = self._load(key)
            if not t.agree(found is None):
                assert found is not None
                return found, key
        return None

    def _candidates(self, before: int) -> list[str]:
        """Newest first: the in-memory snapshot and the listed checkpoints before ``before``
        (a few: each try costs every rank a read)."""
        found: list[tuple[int, str]] = []
        if self.good is not None and self.good["step"] < before:
            found.append((int(self.good["step"]), f"snapshot at step {self.good['step']}"))
        for m in checkpoint.listing(self.trainer.paths.checkpoints):
            if m.step < before:
                found.append((m.step, m.id))
        found.sort(key=lambda f: -f[0])
        return [key for _, key in found[:3]]

    def _load(self, key: str) -> dict[str, Any] | None:
        t = self.trainer
        if key.startswith("snapshot at step "):
            good = self.good
            return good if good is not None and key == f"snapshot at step {good['step']}" else None
        try:
            m = checkpoint.find(t.paths.checkpoints, key)
            snap = checkpoint.load(t.paths.checkpoints / m.file, m)  # size and SHA-256 checked
            checkpoint.check_compatible(t, snap)
        except checkpoint.CheckpointError:
            return None
        return snap

    def _choose(self, before: int) -> tuple[dict[str, Any], str] | None:
        t = self.trainer
        best: tuple[dict[str, Any], str] | None = None
        if self.good is not None and self.good["step"] < before:
            best = (self.good, f"snapshot at step {self.good['step']}")
        if t.saver is not None:
            t.saver.wait()
        for m in reversed(checkpoint.listing(t.paths.checkpoints)):
            if m.step < before and (best is None or m.step > best[0]["step"]):
                try:
                    snap = checkpoint.load(t.paths.checkpoints / m.file, m)
                    checkpoint.check_compatible(t, snap)
                except checkpoint.CheckpointError:
                    continue
                best = (snap, m.id)
                break
        return best

    def _diverged(self, step: int, value: float, why: str | None = None) -> bool:
        t, p = self.trainer, self.policy
        self.tripped += 1
        what = f"{why or f'non-finite loss or gradient norm ({value})'} at step {step}"
        marker = {"marker": "divergence", "step": step, "policy": p.action}
        if p.action == "ignore":
            t.recorder.put(Event(t.step, "error", f"{what}; ignored (policy: ignore)", marker))
            return False
        if p.action == "rollback":
            good = self._last_good(step)
            if good is not None:
                snap, source = good
                t.rewind(snap, source)
                for i in range(len(t.optimizer.param_groups)):
                    t.lr.scale(i, p.lr_factor)
                t.publish_groups()  # viewers show the lr every step now uses
                for _ in range(p.skip * t.job.grad_accum):
                    t.next_batch()
                self._reset()
                t.recorder.put(
                    Event(
                        t.step,
                        "error",
                        f"{what}; rolled back to {source}, lr x{p.lr_factor:g}, skipped {p.skip} "
                        "batches",
                        marker,
                    )
                )
                return True
            what += "; no good state to roll back to"
        t.pause()
        t.recorder.put(Event(t.step, "error", f"{what}; training paused", marker))
        t.pause_message = f"diverged at step {step}: paused"
        return True

    def _reset(self) -> None:
        self._spike_watch.reset()
