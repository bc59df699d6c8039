"""The LR range test in flight: over the next N of the user's own steps.

A probe cannot take batches itself, so the test rides on the loop: before each
of the next N steps the lr is set to the sweep's next value, after it the loss
is read (one read per step: the stop rule needs it now). At the end the model,
optimizer, scheduler and RNG go back to how they were at the start, from a
snapshot in memory or on disk. The batches the test used are consumed.

Under torch.distributed every rank runs the same sweep: each step's loss is
the mean over ranks and every early end (cancel, an lr changed outside, a
missing loss) is agreed, so the ranks end the test at the same step.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from optitui.lrfind import Smoother, StopRule, factor, suggest_all
from optitui.store.records import Event
from optitui.trainer.control import rangetest
from optitui.trainer.core import lr_record, state
from optitui.trainer.core.lr import write_lr
from optitui.trainer.probe.loop_trainer import LoopTrainer
from optitui.trainer.probe.probing import Probing


class Flight:
    """A range test running over the user's own steps. Made by :meth:`Probe.start_test`."""

    def __init__(self, probe: Probing, trainer: LoopTrainer, test: rangetest.RangeTest) -> None:
        self.probe, self.trainer, self.test = probe, trainer, test
        t = trainer
        t.flush()
        t._set_state("lr-find")
        rank = "" if t.dist is None else f"-rank{t.dist.rank}"  # each rank its own RNG state
        self.disk: Path = t.paths.root / f".lrfind-{test.id}{rank}.pt"
        self.snap, said = rangetest.take_snapshot(t, test, self.disk)
        self.smoother = Smoother.from_config(test.config)
        self.lrs: list[float] = []  # what each group was set to for this step
        self.it = 0
        self.stop = StopRule(test.config)
        self.published = 0.0
        t.recorder.put(
            Event(
                test.step,
                "lr-find",
                f"range test {test.id} started over the loop's next {test.config.num_iter} "
                f"steps; {said}",
                {"marker": "lr-find", "id": test.id},
            )
        )
        self._set_lr()

    def _set_lr(self) -> None:
        test, groups = self.test, self.trainer.optimizer.param_groups
        ref_lr = factor(test.config, self.it, test.base[test.ref])
        m = ref_lr / test.base[test.ref]
        for g in test.targets:
            write_lr(groups[g], ref_lr if g == test.ref else test.base[g] * m)
        self.lrs = [float(g["lr"]) for g in groups]
        self.trainer.lr.remember()

    def before_step(self) -> None:
        """Right before the user's step: a loop that writes the lr itself keeps its
        multipliers on the groups not swept, and the sweep's lr wins on the others."""
        t, groups = self.trainer, self.trainer.optimizer.param_groups
        t.lr.notice_writes()
        for g in self.test.targets:
            write_lr(groups[g], self.lrs[g])
        t.lr.remember()

    def _early_end(self, loss: torch.Tensor | float | None, used: lr_record.LrRow | None) -> bool:
        """Cancel, an lr changed outside, or no loss: agreed by every rank."""
        t, test = self.trainer, self.test
        if t.agree(rangetest.cancel_requested(t) is not None):
            self.end("cancelled", f"cancelled after {self.it} iterations")
            return True
        got = None if used is None else lr_record.values(used)  # the test reads every step
        changed = got is not None and any(
            not math.isclose(got[g], self.lrs[g], rel_tol=1e-6) for g in test.targets
        )
        if t.agree(changed):
            self.end(
                "failed",
                "the lr was changed outside optitui during the test "
                "(a scheduler not given to optitui.watch(scheduler=...)?)",
            )
            return True
        if t.agree(loss is None):
            self.end("failed", "probe.step() was called without a loss")
            return True
        return False

    def step(self, loss: torch.Tensor | float | None, used: lr_record.LrRow | None) -> None:
        """One of the user's steps, taken at ``self.lrs`` (``used`` is what it really used)."""
        t, test = self.trainer, self.test
        if self._early_end(loss, used):
            return
        assert loss is not None
        # one read per test step (the mean over ranks under torch.distributed)
        value = t.mean(
            loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(loss, device=t.device)
        )
        smoothed = self.smoother.update(value)
        test.lrs.append(self.lrs[test.ref])
        test.losses.append(value)
        test.smoothed.append(smoothed)
        if time.monotonic() - self.published > rangetest.PUBLISH_EVERY_S:
            t.recorder.put(test.record())
            self.published = time.monotonic()
        reason = self.stop.update(value, smoothed)
        if reason is not None:
            self.end("done", f"stopped early: {reason}")
        elif self.it + 1 >= test.config.num_iter:
            self.end("done", None)
        else:
            self.it += 1
            self._set_lr()

    def end(self, status: str, message: str | None) -> None:
        """Put everything back as it was at the start, then report like the trainer does."""
        t, test = self.trainer, self.test
        self.probe.test_ended()
        test.status, test.message = status, message
        snap = self.snap
        if snap is None:
            snap = rangetest.load_snapshot(self.disk)
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
