"""Where the trainer's added time per step goes: its parts timed inside the step.

    python benchmarks/trainer_parts.py             # about a minute
    python benchmarks/trainer_parts.py --quick     # seconds; what CI runs so it cannot rot

The digits MLP on pre-made batches (``overhead.py``'s tiny step), in 64-step chunks
of four kinds taken in turn (order rotated): the bare loop; the trainer as it is;
the same trainer with a timer around each of its parts; and the same trainer with its
records dropped before they reach the writer thread (the writer then has nothing to
do: what it takes from the step by holding the GIL shows as the difference). Each
chunk ends with the flush that reads its losses, as a run's does.

A part's time per step is the median over chunks, less the timers' own cost (a timed
no-op, measured in the same run, for each timer inside it and its own). The four
operations both loops run (``zero_grad``, forward and loss, backward,
``optimizer.step()``) are timed in the trainer too, so what is left is the trainer's
own work: the rows under them, whose sum is set against the measured added time (the
trainer as it is minus the bare loop). The garbage collector's time in the trainer's
chunks is counted with ``gc.callbacks``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import digits, model_and_opt

from optitui.store.layout import create_run_dir
from optitui.trainer.core import lr_record
from optitui.trainer.core.job import Job
from optitui.trainer.loop.trainer import Trainer

torch.set_num_threads(1)
CHUNK = 64
KINDS = ("bare", "trainer", "timed", "no records")
#: what both loops run: in the trainer, timed to be set apart from its own work
SHARED = ("zero_grad", "forward + loss", "backward", "optimizer.step()")


class Timers:
    """perf_counter timers put around methods, each kept by name with its calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        """Time ``owner.attr`` under ``name`` (an instance attribute shadows the class's)."""
        inner = getattr(owner, attr)
        clock = time.perf_counter
        seconds, calls = self.seconds, self.calls
        seconds.setdefault(name, 0.0)
        calls.setdefault(name, 0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return inner(*args, **kwargs)
            finally:
                seconds[name] += clock() - t0
                calls[name] += 1

        had = attr in vars(owner)
        before = vars(owner).get(attr)
        setattr(owner, attr, timed)
        self._undo.append(
            (lambda: setattr(owner, attr, before)) if had else (lambda: delattr(owner, attr))
        )

    def unwrap(self) -> None:
        while self._undo:
            self._undo.pop()()

    def reset(self) -> None:
        for k in self.seconds:
            self.seconds[k], self.calls[k] = 0.0, 0


def timer_cost(rounds: int = 200_000) -> float:
    """Seconds one timer adds to a call: a timed no-op against the bare no-op."""

    class Box:
        def noop(self) -> None:
            pass

    box, timers = Box(), Timers()
    plain = box.noop
    best_plain = best_timed = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(rounds):
            plain()
        best_plain = min(best_plain, time.perf_counter() - t0)
    timers.wrap(box, "noop", "noop")
    timed = box.noop
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(rounds):
            timed()
        best_timed = min(best_timed, time.perf_counter() - t0)
    return max(best_timed - best_plain, 0.0) / rounds


def put_timers(timers: Timers, trainer: Trainer) -> None:
    """Every part of the trainer's step, top level and the ones inside."""
    opt = trainer.optimizer
    for owner, attr, name in (
        (trainer, "_take_commands", "commands"),
        (trainer, "_train_step", "_train_step"),
        (trainer, "gradients", "gradients"),
        (trainer, "next_batch", "next batch"),
        (opt, "zero_grad", "zero_grad"),
        (trainer, "_loss", "forward + loss"),
        (trainer.amp, "backward", "backward"),
        (trainer, "optimizer_step", "optimizer_step"),
        (opt, "step", "optimizer.step()"),
        (trainer.health, "start", "health: copy"),
        (trainer, "take_health", "health: measure"),
        (trainer.lr, "notice_writes", "lr: writes noticed"),
        (lr_record, "snapshot", "lr: row recorded"),
        (trainer.user, "add_step", "user metrics"),
        (trainer, "_after_step", "_after_step"),
        (trainer, "flush", "flush"),
    ):
        timers.wrap(owner, attr, name)


#: a wrapper part's own time is its total less its inner parts'
INNER = {
    "_train_step": (
        "gradients",
        "optimizer_step",
        "health: copy",
        "health: measure",
        "lr: writes noticed",
        "lr: row recorded",
        "user metrics",
    ),
    "gradients": ("next batch", "zero_grad", "forward + loss", "backward"),
    "optimizer_step": ("optimizer.step()",),
    "_after_step": ("flush",),
}
GLUE = {
    "_train_step": "step: the rest",
    "gradients": "gradients: the rest",
    "optimizer_step": "optimizer_step: the rest",
    "_after_step": "after the step: the rest",
}


def own_times(seconds: dict[str, float], calls: dict[str, int], cost: float) -> dict[str, float]:
    """Each part's seconds less the timers inside it (its own, its inner parts'), and for
    a wrapper part only what its inner parts leave (under its GLUE name)."""
    out = {k: v - calls[k] * cost for k, v in seconds.items()}
    for outer, inner in INNER.items():
        # an inner part's timer runs inside the outer's: its cost is in the outer's time
        rest = out.pop(outer) - sum(calls[k] * cost for k in inner) - sum(out[k] for k in inner)
        out[GLUE[outer]] = rest
    return out


def bare_chunk(model: nn.Module, opt: torch.optim.Optimizer, batches: list[Any]) -> float:
    t0 = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def trainer_chunk(trainer: Trainer, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer._take_commands()
        trainer._train_step()
        trainer._after_step()
    if trainer._rows:
        trainer.flush(check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=300, help="chunks of each kind")
    ap.add_argument("--quick", action="store_true", help="a few chunks, for CI")
    args = ap.parse_args()
    chunks = 8 if args.quick else args.chunks
    ds = digits()
    batches = ([ds[i : i + CHUNK] for i in range(0, len(ds) - 63, CHUNK)] * 3)[:CHUNK]
    cost = timer_cost(20_000 if args.quick else 200_000)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, opt = model_and_opt()
        job = Job(
            model=model, optimizer=opt, train_data=batches, loss_fn=nn.functional.cross_entropy
        )
        trainer = Trainer(job, torch.device("cpu"), create_run_dir(root, "p", root / "p"))
        trainer._start()
        bare_model, bare_opt = model_and_opt()
        timers = Timers()
        put = trainer.recorder.put
        gc_seconds = [0.0]
        gc_started = [0.0]
        in_trainer = [False]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if not in_trainer[0]:
                return
            if phase == "start":
                gc_started[0] = time.perf_counter()
            else:
                gc_seconds[0] += time.perf_counter() - gc_started[0]

        gc.callbacks.append(on_gc)
        per_step: dict[str, list[float]] = {k: [] for k in KINDS}
        parts: dict[str, list[float]] = {}
        try:
            for i in range(2 + chunks):  # two rounds to warm up
                order = KINDS[i % 4 :] + KINDS[: i % 4]
                got: dict[str, float] = {}
                for kind in order:
                    if kind == "bare":
                        got[kind] = bare_chunk(bare_model, bare_opt, batches)
                        continue
                    if kind == "timed":
                        put_timers(timers, trainer)
                    elif kind == "no records":
                        trainer.recorder.put = lambda record: None  # type: ignore[method-assign]
                    in_trainer[0] = kind == "trainer"
                    try:
                        got[kind] = trainer_chunk(trainer, CHUNK)
                    finally:
                        in_trainer[0] = False
                        timers.unwrap()
                        trainer.recorder.put = put  # type: ignore[method-assign]
                    if kind == "timed":
                        for name, s in own_times(timers.seconds, timers.calls, cost).items():
                            parts.setdefault(name, []).append(s)
                        timers.reset()
                if i >= 2:
                    for kind, s in got.items():
                        per_step[kind].append(s)
                else:
                    parts.clear()
                    gc_seconds[0] = 0.0
        finally:
            gc.callbacks.remove(on_gc)
            trainer.request_stop("benchmark over")
            trainer._finish("stopped", None)

    def us(seconds: float) -> float:
        return seconds * 1e6 / CHUNK

    med = {k: us(statistics.median(v)) for k, v in per_step.items()}
    added = [us(t - b) for t, b in zip(per_step["trainer"], per_step["bare"], strict=True)]
    writer = [us(t - n) for t, n in zip(per_step["trainer"], per_step["no records"], strict=True)]
    own = {k: us(statistics.median(v)) for k, v in parts.items() if k not in SHARED}
    shared = {k: us(statistics.median(parts[k])) for k in SHARED}
    print(
        f"digits MLP, pre-made batches, {chunks} chunks of {CHUNK} steps of each kind, "
        f"load {os.getloadavg()[0]:.2f}; one timer costs {cost * 1e9:.0f} ns (taken off)"
    )
    print(f"  bare step {med['bare']:.1f} us; trainer step {med['trainer']:.1f} us")
    print(f"  added by the trainer: {statistics.median(added):+.1f} us/step (median over chunks)")
    print("  the trainer's own parts, us/step (median over chunks):")
    for name, v in sorted(own.items(), key=lambda kv: -kv[1]):
        print(f"    {name:28s} {v:7.2f}")
    print(f"    {'sum':28s} {sum(own.values()):7.2f}")
    both = sum(shared.values())
    print(
        f"  what both loops run, timed in the trainer: {both:.1f} us/step "
        + ", ".join(f"{k} {v:.1f}" for k, v in shared.items())
        + f" (the bare step, all of it: {med['bare']:.1f})"
    )
    print(f"  garbage collection in the trainer's chunks: {us(gc_seconds[0] / chunks):.2f} us/step")
    print(
        "  the writer thread's share (the trainer minus the trainer with its records "
        f"dropped): {statistics.median(writer):+.2f} us/step"
    )


if __name__ == "__main__":
    main()
