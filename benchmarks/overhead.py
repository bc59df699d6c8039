"""Per-step overhead of the optitui trainer against a bare loop, side by side.

    python benchmarks/overhead.py            # full run (about a minute)
    python benchmarks/overhead.py --quick    # seconds; what CI runs so it cannot rot

The same model, data and optimizer run as a bare PyTorch loop and under the
trainer (headless, with its run store, writer thread and command watcher),
interleaved, several rounds each. Both record a timestamp per step; a
variant's cost is the time from its first to its last step, so process start
and store creation are left out. Two workloads: the digits sample's MLP on
pre-made batches (a tiny step, where overhead shows most) and the digits
sample as shipped, with its shuffling DataLoader. A third row has the step also
compute five tensor scalars of the user's (accuracy, logit stats): the bare loop
computes and drops them, optitui records them (step_fn returns a mapping).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optitui.store.layout import create_run_dir
from optitui.store.reader import RunReader
from optitui.trainer.core.job import Job
from optitui.trainer.loop.trainer import Trainer

torch.set_num_threads(1)


def digits() -> TensorDataset:
    x, y = load_digits(return_X_y=True)
    return TensorDataset(torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y))


def model_and_opt() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
    head = nn.Linear(64, 10)
    opt = torch.optim.SGD(
        [{"params": body.parameters(), "lr": 0.05}, {"params": head.parameters(), "lr": 0.02}],
        momentum=0.9,
    )
    return nn.Sequential(body, head), opt


def five(out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Five scalars a user logs per step; computed the same way in both loops."""
    out = out.detach()
    return {
        "acc": (out.argmax(1) == y).float().mean(),
        "logit/max": out.max(),
        "logit/min": out.min(),
        "logit/mean": out.mean(),
        "logit/std": out.std(),
    }


def with_five(model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
    x, y = batch
    out = model(x)
    return {"loss": nn.functional.cross_entropy(out, y), **five(out, y)}


def bare(data: Callable[[], Iterable[Any]], steps: int, metrics: bool = False) -> list[float]:
    model, opt = model_and_opt()
    loss_fn = nn.functional.cross_entropy
    times = [0.0] * steps
    done = 0
    while done < steps:
        for x, y in data():
            opt.zero_grad(set_to_none=True)
            out = model(x)
            loss = loss_fn(out, y)
            if metrics:
                five(out, y)  # computed, never read: the bare loop's share of the work
            loss.backward()
            opt.step()
            times[done] = time.time()
            done += 1
            if done == steps:
                break
    return times


def trained(
    data: Callable[[], Iterable[Any]], steps: int, root: Path, i: int, metrics: bool = False
) -> list[float]:
    model, opt = model_and_opt()
    job = (
        Job(model=model, optimizer=opt, train_data=data(), step_fn=with_five)
        if metrics
        else Job(model=model, optimizer=opt, train_data=data(), loss_fn=nn.functional.cross_entropy)
    )
    paths = create_run_dir(root, "bench", root / f"run{i}")
    trainer = Trainer(job, torch.device("cpu"), paths, max_steps=steps)
    trainer.run()
    with RunReader(paths.root) as r:
        return list(r.read_metrics().columns["time"])


def summarize(times: list[float]) -> tuple[float, float]:
    """(seconds per step over the whole run, median step in seconds)."""
    diffs = [b - a for a, b in itertools.pairwise(times)]
    return (times[-1] - times[0]) / (len(times) - 1), statistics.median(diffs)


def measure(
    name: str, data: Callable[[], Iterable[Any]], steps: int, rounds: int, metrics: bool = False
) -> dict[str, Any]:
    per_step: dict[str, list[float]] = {"bare": [], "optitui": []}
    medians: dict[str, list[float]] = {"bare": [], "optitui": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            order = ("bare", "optitui") if i % 2 == 0 else ("optitui", "bare")
            for variant in order:
                t = (
                    bare(data, steps, metrics)
                    if variant == "bare"
                    else trained(data, steps, Path(tmp), i, metrics)
                )
                mean, med = summarize(t)
                per_step[variant].append(mean)
                medians[variant].append(med)
    b, o = statistics.median(per_step["bare"]), statistics.median(per_step["optitui"])
    # pair each round's two runs: the spread of their difference says how much to trust it
    deltas = [(oo - bb) * 1e6 for oo, bb in zip(per_step["optitui"], per_step["bare"], strict=True)]
    return {
        "workload": name,
        "bare_us": b * 1e6,
        "optitui_us": o * 1e6,
        "added_us": (o - b) * 1e6,
        "added_median_step_us": (
            statistics.median(medians["optitui"]) - statistics.median(medians["bare"])
        )
        * 1e6,
        "ratio": o / b,
        "delta_min_us": min(deltas),
        "delta_max_us": max(deltas),
    }


def chunked(premade: list[Any], chunks: int, metrics: bool = False) -> dict[str, float]:
    """Load-resistant estimate: 64-step chunks of the bare step and of the trainer's own
    step (``_train_step`` plus its flush, with the writer thread running), alternating;
    on a busy machine the low percentiles of each are what the code itself costs."""
    with tempfile.TemporaryDirectory() as tmp:
        model, opt = model_and_opt()
        job = (
            Job(model=model, optimizer=opt, train_data=premade, step_fn=with_five)
            if metrics
            else Job(
                model=model, optimizer=opt, train_data=premade, loss_fn=nn.functional.cross_entropy
            )
        )
        root = Path(tmp)
        trainer = Trainer(job, torch.device("cpu"), create_run_dir(root, "c", root / "c"))
        trainer._start()
        bare_model, bare_opt = model_and_opt()
        bare_t, ours_t = [], []
        for _ in range(chunks):
            t0 = time.perf_counter()
            for x, y in premade[:64]:
                bare_opt.zero_grad(set_to_none=True)
                out = bare_model(x)
                if metrics:
                    five(out, y)
                nn.functional.cross_entropy(out, y).backward()
                bare_opt.step()
            t1 = time.perf_counter()
            for _ in range(64):
                trainer._train_step()
                trainer.step += 1
            trainer.flush(check=True)
            t2 = time.perf_counter()
            bare_t.append((t1 - t0) / 64)
            ours_t.append((t2 - t1) / 64)
        trainer.request_stop("benchmark over")
        trainer._finish("stopped", None)

    def pct(xs: list[float], q: float) -> float:
        return sorted(xs)[int(q * (len(xs) - 1))]

    return {q: (pct(ours_t, q) - pct(bare_t, q)) * 1e6 for q in (0.1, 0.25, 0.5)}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a few seconds, for CI")
    args = ap.parse_args()
    steps, rounds = (300, 2) if args.quick else (4000, 9)
    ds = digits()
    premade = [ds[i : i + 64] for i in range(0, len(ds) - 63, 64)]
    premade = (premade * 3)[:64]
    loader = DataLoader(ds, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    rows = [
        measure("digits MLP, pre-made batches", lambda: premade, steps, rounds),
        measure("digits MLP, shuffling DataLoader", lambda: loader, steps, rounds),
        measure("pre-made, + 5 tensor metrics", lambda: premade, steps, rounds, metrics=True),
    ]
    print(f"torch {torch.__version__}, 1 thread, {steps} steps x {rounds} rounds, interleaved")
    print(
        f"{'workload':34} {'bare us':>9} {'optitui us':>11} {'added us':>9} "
        f"{'median-step added':>18} {'ratio':>7} {'round deltas us':>18}"
    )
    for r in rows:
        print(
            f"{r['workload']:34} {r['bare_us']:9.1f} {r['optitui_us']:11.1f} "
            f"{r['added_us']:9.2f} {r['added_median_step_us']:18.2f} {r['ratio']:7.4f} "
            f"{r['delta_min_us']:8.1f}..{r['delta_max_us']:.1f}"
        )
    est = chunked(premade, 30 if args.quick else 400)
    print(
        "\nadded per step, 64-step chunks alternating with the bare step "
        f"(10th / 25th / 50th percentile): {est[0.1]:.1f} / {est[0.25]:.1f} / {est[0.5]:.1f} us"
    )
    est5 = chunked(premade, 30 if args.quick else 400, metrics=True)
    print(
        "the same with 5 tensor metrics recorded per step (both loops compute them): "
        f"{est5[0.1]:.1f} / {est5[0.25]:.1f} / {est5[0.5]:.1f} us"
    )
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
