"""Where the trainer's added time per step goes: each part taken out in turn.

    python benchmarks/trainer_parts.py             # about a minute
    python benchmarks/trainer_parts.py --quick     # seconds; what CI runs so it cannot rot

The digits MLP on pre-made batches (``overhead.py``'s tiny step), in 64-step chunks of
four kinds taken in turn (order rotated each round): the bare loop; one trainer as it
is; the same trainer with its optimizer health off (``health_every`` 0 for the chunk);
and the same trainer with its records dropped before they reach the writer thread,
which then has nothing to do (what it takes from the step by holding the GIL shows as
the difference). Each chunk ends with the flush that reads its losses, as a run's
does; the flush alone is timed in every trainer chunk (one timer a chunk).

A part is measured by taking it out, not by timers inside the step: between torch's
operations the interpreter runs cold, and a timer around each small part costs about
four times what it costs in a warm loop, more than several of the parts themselves.
What a part adds is the median over rounds of the round's difference. The added time
splits into the health (the trainer against itself with health off: its copies, its
measurement and its share of the flush) and the trainer with health off against the
bare loop: its flush (timed) and the step's own bookkeeping, the rest (the batch,
the lr row, the loss buffer, the loop around the four operations both loops run). The garbage
collector's time in the trainer's chunks is counted with ``gc.callbacks``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import digits, model_and_opt

from optitui.store.layout import create_run_dir
from optitui.trainer.core.job import Job
from optitui.trainer.loop.trainer import Trainer

torch.set_num_threads(1)
CHUNK = 64
KINDS = ("bare", "trainer", "health off", "no records")


def bare_chunk(model: nn.Module, opt: torch.optim.Optimizer, batches: list[Any]) -> float:
    t0 = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def trainer_chunk(trainer: Trainer, steps: int) -> tuple[float, float]:
    """(the chunk's seconds, its flush's), the chunk ending with its flush."""
    t0 = time.perf_counter()
    for _ in range(steps - 1):
        trainer._take_commands()
        trainer._train_step()
        trainer._after_step()
    trainer._take_commands()
    trainer._train_step()
    trainer.step += 1  # what _after_step counts; its flush is the one timed here
    t1 = time.perf_counter()
    trainer.flush(check=True)
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1


def median_diff(a: list[float], b: list[float]) -> float:
    """The median over rounds of a round's ``a - b``, in us per step."""
    return statistics.median(x - y for x, y in zip(a, b, strict=True)) * 1e6 / CHUNK


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=300, help="rounds of the four chunks")
    ap.add_argument("--quick", action="store_true", help="a few rounds, for CI")
    args = ap.parse_args()
    rounds = 8 if args.quick else args.rounds
    ds = digits()
    batches = ([ds[i : i + CHUNK] for i in range(0, len(ds) - 63, CHUNK)] * 3)[:CHUNK]
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    flushes: list[float] = []  # the flushes of the chunks with health off
    gc_seconds, gc_started, counting = [0.0], [0.0], [False]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if counting[0]:
            if phase == "start":
                gc_started[0] = time.perf_counter()
            else:
                gc_seconds[0] += time.perf_counter() - gc_started[0]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, opt = model_and_opt()
        job = Job(
            model=model, optimizer=opt, train_data=batches, loss_fn=nn.functional.cross_entropy
        )
        trainer = Trainer(job, torch.device("cpu"), create_run_dir(root, "p", root / "p"))
        trainer._start()
        bare_model, bare_opt = model_and_opt()
        put, every = trainer.recorder.put, trainer.health.every
        gc.callbacks.append(on_gc)
        try:
            for i in range(2 + rounds):  # two rounds to warm up
                got: dict[str, float] = {}
                for kind in KINDS[i % 4 :] + KINDS[: i % 4]:
                    if kind == "bare":
                        got[kind] = bare_chunk(bare_model, bare_opt, batches)
                        continue
                    trainer.health.every = 0 if kind == "health off" else every
                    if kind == "no records":
                        trainer.recorder.put = lambda record: None  # type: ignore[method-assign]
                    counting[0] = i >= 2 and kind == "trainer"
                    try:
                        got[kind], flush = trainer_chunk(trainer, CHUNK)
                    finally:
                        counting[0] = False
                        trainer.recorder.put = put  # type: ignore[method-assign]
                        trainer.health.every = every
                    if kind == "health off" and i >= 2:
                        flushes.append(flush)
                if i >= 2:
                    for kind, s in got.items():
                        times[kind].append(s)
        finally:
            gc.callbacks.remove(on_gc)
            trainer.request_stop("benchmark over")
            trainer._finish("stopped", None)

    def per_step(kind: str) -> float:
        return statistics.median(times[kind]) * 1e6 / CHUNK

    added = median_diff(times["trainer"], times["bare"])
    flush = statistics.median(flushes) * 1e6 / CHUNK
    health = median_diff(times["trainer"], times["health off"])
    writer = median_diff(times["trainer"], times["no records"])
    print(
        f"digits MLP, pre-made batches, {rounds} rounds of four {CHUNK}-step chunks, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print(f"  bare step {per_step('bare'):.1f} us; trainer step {per_step('trainer'):.1f} us")
    print(f"  added by the trainer: {added:+.1f} us/step (median over rounds)")
    print(f"    optimizer health every {every} steps: {health:+.1f} us/step (taken out)")
    print(f"    the flush every {CHUNK} steps, health off: {flush:.1f} us/step (timed alone)")
    print(f"    the step's own bookkeeping (the rest): {added - health - flush:+.1f} us/step")
    print(f"  the writer thread's share (records dropped): {writer:+.1f} us/step")
    gc_us = gc_seconds[0] * 1e6 / (rounds * CHUNK)
    print(f"  garbage collection in the trainer's chunks: {gc_us:.2f} us/step")


if __name__ == "__main__":
    main()
