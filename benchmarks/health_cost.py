"""What optimizer health costs per step, at the default interval, side by side.

    python benchmarks/health_cost.py            # digits MLP and chargpt (a few minutes)
    python benchmarks/health_cost.py --quick    # seconds; what CI runs so it cannot rot

Two trainers on the same workload, one with ``health_every=0`` (off) and one with
``health_every=16`` (the default), step in alternating chunks (each ending with the
flush that reads the losses and the measurements). Each step's CPU time (this
thread's, which a busy shared machine stretches far less than wall time) is kept:
medians of the steps with health off, of the measured steps and of the steps
between give the added time per step at the default interval
(``(measured - between + 15 * (between - off)) / 16``) and its share of a step. The
workloads: ``sample_runs/digits.py`` as shipped (its MLP in two groups, SGD with
momentum, its shuffling DataLoader and validation every 100 steps); the same MLP on
pre-made batches, a tiny step where any cost shows most; and
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


def steps(make: Callable[[int], Job], n: int, size: int = CHUNK) -> dict[str, list[float]]:
    """CPU seconds of each step (this thread's: a busy shared machine stretches wall time
    far more than CPU time): health off ("off"), and on, split into the measured steps
    ("measured") and the others ("between"); ``size``-step chunks, alternating, each
    ending with its flush (counted in the chunk's last step)."""
    out: dict[str, list[float]] = {"off": [], "measured": [], "between": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        trainers: dict[str, Trainer] = {}
        for name, every in (("off", 0), ("on", 16)):
            paths = create_run_dir(root, name, root / name)
            t = Trainer(make(every), torch.device("cpu"), paths, flush_every=size)
            t._start()
            trainers[name] = t
        for i in range(n):
            for name in ("off", "on") if i % 2 == 0 else ("on", "off"):
                t = trainers[name]
                for k in range(size):
                    measured = t.health.every and t.step % t.health.every == 0
                    t0 = time.thread_time()
                    t._train_step()
                    t.step += 1
                    if k == size - 1:
                        t.flush(check=True)
                    took = time.thread_time() - t0
                    key = "off" if name == "off" else ("measured" if measured else "between")
                    out[key].append(took)
        for t in trainers.values():
            t.request_stop("benchmark over")
            t._finish("stopped", None)
    return out


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def report(name: str, got: dict[str, list[float]]) -> dict[str, Any]:
    off, between, measured = (median(got[k]) * 1e6 for k in ("off", "between", "measured"))
    per_step = ((measured - between) + 15 * (between - off)) / 16  # one step in 16 measured
    one = (measured - between) / 16  # a measurement spread over its interval: no noise
    return {  # from comparing two trainers' medians (the hooks' call on the other steps)
        "workload": name,
        "off": off,
        "between": between,
        "measured": measured,
        "added": per_step,
        "share": 100 * per_step / off,
        "one": one,
        "one_share": 100 * one / between,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a few seconds, for CI")
    args = ap.parse_args()
    n_digits, n_gpt = (6, 2) if args.quick else (200, 16)
    rows = [
        report("digits sample as shipped", steps(digits_sample_job, n_digits)),
        report("digits MLP, pre-made batches", steps(digits_job, n_digits)),
        # 16-step chunks (a measurement in each): a chargpt step is about 1000 digits steps
        report("chargpt (AdamW, 2 groups)", steps(chargpt_job, n_gpt, 16)),
    ]
    print(f"torch {torch.__version__}, 1 thread; median CPU time per step (this thread)")
    print(
        f"{'workload':30} {'off us':>9} {'between us':>11} {'measured us':>12} "
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
