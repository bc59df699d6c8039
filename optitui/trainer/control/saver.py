"""Saving checkpoints without holding up training.

The training thread only copies the state to host memory (``state.capture``);
a writer thread serialises, writes, fsyncs, prunes and reports. Periodic
saves (every N steps and/or M minutes), the best by validation loss, manual
saves and the state before a restore all go through here.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from optitui.store.layout import RunPaths
from optitui.store.records import Event
from optitui.store.supervise import Supervisor
from optitui.trainer.core import checkpoint, state
from optitui.trainer.core.training import Training

#: told how a save ended: (checkpoint id, None) once it is on disk and listed, or
#: (None, why it was not written); called on the writer thread
Answer = Callable[[str | None, str | None], None]


@dataclass
class Policy:
    every: int | None = None  # steps
    minutes: float | None = None
    keep_last: int = 3
    keep_best: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "every": self.every,
            "minutes": self.minutes,
            "keep_last": self.keep_last,
            "keep_best": self.keep_best,
        }


class Saved(Training, Protocol):
    """What the checkpoint writer reads of the run besides its state."""

    paths: RunPaths
    supervisor: Supervisor
    #: model entries not finite before training (masks): a save with them is fine
    expected_non_finite: checkpoint.Expected
    #: the newest validation loss, listed with each checkpoint
    last_val: float | None


#: the checkpoint writer's nice value, the lowest priority there is: on a busy machine it
#: takes about 1.5% of a core from training (nice 10 took about 10%), and its CPU is small
#: (hashing and writing), so a write still ends in seconds
WRITER_NICE = 19


def lower_priority() -> None:
    """Lower the calling thread's CPU priority (on Linux a nice value is per thread)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), WRITER_NICE))
    except (AttributeError, OSError):  # no per-thread priority here: the write goes on as is
        pass


class Saver:
    def __init__(self, trainer: Saved, policy: Policy) -> None:
        self.trainer = trainer
        self.folder = trainer.paths.checkpoints
        self.policy = policy
        self.best_val: float | None = None
        self.last_loss: float | None = None
        self._last_save_step = 0
        self._last_save_time = time.time()
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._thread = trainer.supervisor.thread("optitui-checkpoints", self._run)
        self._thread.start()

    def due(self) -> bool:
        """A periodic save is due (called at flush time and every step when `every` is set)."""
        p, step = self.policy, self.trainer.step
        if p.every is not None and step - self._last_save_step >= p.every:
            return True
        return p.minutes is not None and time.time() - self._last_save_time >= p.minutes * 60

    def next_due_step(self) -> float:
        """The step at which a step-based periodic save falls due (inf when there is none)."""
        every = self.policy.every
        return float("inf") if every is None else self._last_save_step + every

    def counted(self, reason: str) -> None:
        """The periodic schedule counts from periodic saves only: best, manual and undo
        saves come at their own times and must not push the next periodic one away."""
        if reason == "periodic":
            self._last_save_step, self._last_save_time = self.trainer.step, time.time()

    def save(
        self,
        reason: str,
        tag: str | None = None,
        snap: dict[str, Any] | None = None,
        answer: Answer | None = None,
    ) -> str:
        """Capture now (on the training thread) and write in the background; returns the id.
        ``answer`` hears from the writer thread once the checkpoint is listed, or why not."""
        trainer = self.trainer
        snap = state.capture(trainer) if snap is None else snap
        cid = checkpoint.new_id(trainer.step, reason)
        self.counted(reason)
        self._jobs.put((snap, cid, reason, tag, self.last_loss, trainer.last_val, answer))
        return cid

    def _run(self) -> None:
        lower_priority()
        while True:
            job = self._jobs.get()
            if job is None:
                self._jobs.task_done()
                return
            try:
                self._write(*job)
            except BaseException as exc:
                # the save is lost, never its answer; the supervisor records the fault
                answer = job[-1]
                if answer is not None:
                    answer(None, f"checkpoint {job[1]} not written: {type(exc).__name__}: {exc}")
                raise
            finally:
                self._jobs.task_done()

    def _write(
        self,
        snap: dict[str, Any],
        cid: str,
        reason: str,
        tag: str | None,
        loss: float | None,
        val: float | None,
        answer: Answer | None,
    ) -> None:
        rec = self.trainer.recorder
        step = int(snap["step"])
        try:
            m = checkpoint.write(
                self.folder,
                snap,
                cid,
                reason=reason,
                tag=tag,
                loss=loss,
                val_loss=val,
                expected=self.trainer.expected_non_finite,
            )
        except Exception as exc:  # a full disk, a folder gone, a state that is not finite
            why = str(exc) if isinstance(exc, checkpoint.CheckpointError | OSError) else repr(exc)
            rec.put(Event(step, "warning", f"checkpoint {cid} not written: {why}"))
            if answer is not None:
                answer(None, f"checkpoint {cid} not written: {why}")
            return
        rec.put(
            Event(
                step,
                "checkpoint",
                f"saved {m.id} ({reason})",
                {
                    "marker": "save",
                    "id": m.id,
                    "reason": reason,
                    "tag": tag,
                    # the validation loss it was saved at: a viewer names the best by it
                    "val": val if val is not None and math.isfinite(val) else None,
                },
            )
        )
        if answer is not None:  # on disk and listed: now the save is done
            answer(m.id, None)
        try:
            checkpoint.prune(self.folder, self.policy.keep_last, self.policy.keep_best)
        except Exception as exc:  # pruning failed: the new checkpoint stands
            rec.put(Event(step, "warning", f"old checkpoints not pruned: {exc}"))

    def busy(self) -> bool:
        """A checkpoint is queued or being written."""
        return self._jobs.unfinished_tasks > 0

    def wait(self) -> None:
        """Block until every queued checkpoint is on disk (or has failed)."""
        self._jobs.join()

    def close(self, timeout: float = 120.0) -> None:
        """Wait for queued writes to finish."""
        self._jobs.put(None)
        self._thread.join(timeout)
