"""What optimizer health costs per step, at the default interval, side by side.

    python benchmarks/health_cost.py            # digits MLP and chargpt (a few minutes)
    python benchmarks/health_cost.py --quick    # seconds; what CI runs so it cannot rot

Two trainers on the same workload, one with ``health_every=0`` (off) and one with
``health_every=16`` (the default), step in alternating chunks (each ending with the
flush that reads the losses and the measurements). Each step's CPU time (this
thread's, which a busy shared machine stretches far less than wall time) is kept
and paired with the same step of the other trainer: both draw the same batches in
the same order, so a step that costs more in both (an epoch's first batch, which
builds the loader's iterator; the flush) cancels out. The added time per step is
the median over chunks of a chunk's paired differences, flush included, divided by
its steps; the medians of the paired differences on the measured steps and on the
steps between say where it goes (a measurement spread over its 16 steps:
``(measured - between) / 16``). The workloads: ``sample_runs/digits.py`` as shipped
(its MLP in two groups, SGD with momentum, its shuffling DataLoader and validation
every 100 steps); the same MLP on pre-made batches, a tiny step where any cost shows
most; and
``sample_runs/chargpt.py``'s transformer and AdamW groups on pre-made batches of
its own text.
"""

from __future__ import annotations

import argparse
import os
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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sample_runs"))

from overhead import digits, model_and_opt

from optitui.store.layout import create_run_dir
from optitui.trainer.core.job import Job
from optitui.trainer.loop.trainer import Trainer

torch.set_num_threads(1)
CHUNK = 64
EVERY = 16  # the default interval


def digits_sample_job(every: int) -> Job:
    import digits as sample

    job: Job = sample.setup(torch.device("cpu"))  # its shuffling loader, validation every 100
    job.health_every = every
    return job


def digits_job(every: int) -> Job:
    ds = digits()
    premade = [ds[i : i + 64] for i in range(0, len(ds) - 63, 64)]
    model, opt = model_and_opt()
    return Job(
        model=model,
        optimizer=opt,
        train_data=(premade * 3)[:CHUNK],
        loss_fn=nn.functional.cross_entropy,
        health_every=every,
    )


def chargpt_job(every: int) -> Job:
    import chargpt

    text = chargpt.corpus(200_000)
    lookup = {c: i for i, c in enumerate(sorted(set(text)))}
    data = torch.tensor([lookup[c] for c in text], dtype=torch.long)
    torch.manual_seed(0)
    job = chargpt.setup(torch.device("cpu"))  # its model, its AdamW groups, its clipping
    batches = list(chargpt.Batches(data, batch=32, per_epoch=CHUNK, seed=0))
    job.train_data, job.val_data, job.health_every = batches, None, every
    return job


def steps(
    make: Callable[[int], Job], n: int, size: int = CHUNK, on: int = EVERY
) -> dict[str, dict[int, float]]:
    """CPU seconds of each step by its number (this thread's: a busy shared machine
    stretches wall time far more than CPU time), with health off ("off") and on ("on":
    ``health_every=on``, 0 for a control run where both are off);
    ``size``-step chunks, alternating, each ending with its flush (counted in the
    chunk's last step)."""
    out: dict[str, dict[int, float]] = {"off": {}, "on": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        trainers: dict[str, Trainer] = {}
        for name, every in (("off", 0), ("on", on)):
            paths = create_run_dir(root, name, root / name)
            t = Trainer(make(every), torch.device("cpu"), paths, flush_every=size)
            t._start()
            trainers[name] = t
        for i in range(n):
            for name in ("off", "on") if i % 2 == 0 else ("on", "off"):
                t, took = trainers[name], out[name]
                for k in range(size):
                    step = t.step
                    t0 = time.thread_time()
                    t._train_step()
                    t.step += 1
                    if k == size - 1:
                        t.flush(check=True)
                    took[step] = time.thread_time() - t0
        for t in trainers.values():
            t.request_stop("benchmark over")
            t._finish("stopped", None)
    return out


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def report(name: str, got: dict[str, dict[int, float]], size: int) -> dict[str, Any]:
    off, on = got["off"], got["on"]
    us = 1e6
    # the same step of both trainers: the same batch, the same place in its epoch
    paired = {s: on[s] - off[s] for s in on}
    chunks: dict[int, float] = {}
    for s, d in paired.items():
        chunks[s // size] = chunks.get(s // size, 0.0) + d
    # everything a chunk of steps adds (its measurements, its flush's read of them),
    # per step: the cost; the medians of single steps then say where it is
    per_step = median([d / size for d in chunks.values()]) * us
    d_measured = median([d for s, d in paired.items() if s % EVERY == 0]) * us
    d_between = median([d for s, d in paired.items() if s % EVERY]) * us
    step = median(list(off.values())) * us
    return {
        "workload": name,
        "off": step,
        "between": d_between,
        "measured": d_measured,
        "added": per_step,
        "share": 100 * per_step / step,
        "one": (d_measured - d_between) / EVERY,  # a measurement spread over its interval
        "one_share": 100 * (d_measured - d_between) / EVERY / step,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a few seconds, for CI")
    ap.add_argument(
        "--control",
        action="store_true",
        help="both trainers with health off: what the method reads where there is nothing",
    )
    ap.add_argument("--chunks", type=int, default=200, help="chunks of each digits workload")
    args = ap.parse_args()
    n_digits, n_gpt = (6, 2) if args.quick else (args.chunks, 16)
    on = 0 if args.control else EVERY
    rows = [
        report("digits sample as shipped", steps(digits_sample_job, n_digits, on=on), CHUNK),
        report("digits MLP, pre-made batches", steps(digits_job, n_digits, on=on), CHUNK),
        # 16-step chunks (a measurement in each): a chargpt step is about 1000 digits steps
        report("chargpt (AdamW, 2 groups)", steps(chargpt_job, n_gpt, 16, on), 16),
    ]
    print(
        f"torch {torch.__version__}, 1 thread; CPU time (this thread): the median step with "
        "health off; added: the median chunk's on - off per step; +: medians of on - off "
        "at the same step"
    )
    print(
        f"{'workload':30} {'step us':>9} {'+between us':>11} {'+measured us':>12} "
        f"{'added us/step':>14} {'added %':>8} {'measurement/16 us':>18} {'%':>6}"
    )
    for r in rows:
        print(
            f"{r['workload']:30} {r['off']:9.1f} {r['between']:11.1f} {r['measured']:12.1f} "
            f"{r['added']:14.2f} {r['share']:7.2f}% {r['one']:18.2f} {r['one_share']:5.2f}%"
        )
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
