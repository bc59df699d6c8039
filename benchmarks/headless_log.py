"""What the headless progress lines cost a training step, side by side.

    python benchmarks/headless_log.py            # a minute or two
    python benchmarks/headless_log.py --quick    # seconds; what CI runs so it cannot rot

The digits MLP on pre-made batches (a tiny step, where any cost shows most),
run as a bare loop, under the trainer with --quiet (no reporter), and under
the trainer with the reporter printing a progress line every second (30 times
more often than the default) plus every event, interleaved, several rounds
each. A variant's cost is the time from its first to its last recorded step.
On a shared machine those whole-run figures swing by more than the reporter
can cost, so the reporter's own CPU time (``time.thread_time`` around each of
its reads) is measured too: that is what it can take from a training step at
most, load or no load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from overhead import bare, digits, model_and_opt, summarize

from optitui.console.progress import Reporter
from optitui.store.layout import create_run_dir
from optitui.store.reader import RunReader
from optitui.trainer.core.job import Job
from optitui.trainer.loop.trainer import Trainer

torch.set_num_threads(1)


class TimedReporter(Reporter):
    """The reporter, adding up the CPU time of its thread's reads and prints."""

    cpu = 0.0
    polls = 0

    def poll_once(self, final: bool = False) -> None:
        t0 = time.thread_time()
        super().poll_once(final)
        TimedReporter.cpu += time.thread_time() - t0
        TimedReporter.polls += 1


def trained(
    premade: list[Any], steps: int, root: Path, name: str, every: float | None
) -> list[float]:
    model, opt = model_and_opt()
    job = Job(model=model, optimizer=opt, train_data=premade, loss_fn=nn.functional.cross_entropy)
    paths = create_run_dir(root, name, root / name)
    trainer = Trainer(job, torch.device("cpu"), paths, max_steps=steps)
    with open(os.devnull, "w") as sink:
        reporter = None if every is None else TimedReporter(paths.root, sink, every=every)
        if reporter is not None:
            reporter.start()
        trainer.run()
        if reporter is not None:
            reporter.stop()
    with RunReader(paths.root) as r:
        return list(r.read_metrics().columns["time"])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a few seconds, for CI")
    args = ap.parse_args()
    steps, rounds = (300, 2) if args.quick else (3000, 6)
    ds = digits()
    premade = [ds[i : i + 64] for i in range(0, len(ds) - 63, 64)][:64]
    variants = ("bare", "quiet", "progress every 1 s")
    per_step: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            for v in variants[i % 3 :] + variants[: i % 3]:  # each variant takes each slot
                if v == "bare":
                    times = bare(lambda: premade, steps)
                else:
                    every = None if v == "quiet" else 1.0
                    times = trained(premade, steps, Path(tmp), f"{v[:5]}{i}", every)
                per_step[v].append(summarize(times)[0])
    base = statistics.median(per_step["bare"])
    print(f"torch {torch.__version__}, 1 thread, {steps} steps x {rounds} rounds, interleaved")
    print(f"{'variant':22} {'us/step':>9} {'added us':>9} {'ratio':>7}")
    for v in variants:
        m = statistics.median(per_step[v])
        print(f"{v:22} {m * 1e6:9.1f} {(m - base) * 1e6:9.1f} {m / base:7.3f}")
    quiet, logged = per_step["quiet"], per_step["progress every 1 s"]
    deltas = [(b - a) * 1e6 for a, b in zip(quiet, logged, strict=True)]
    print(f"progress minus quiet, per round: {min(deltas):.1f}..{max(deltas):.1f} us/step")
    trained_s = sum(per_step["progress every 1 s"]) * steps
    print(
        f"reporter thread: {TimedReporter.polls} reads, {TimedReporter.cpu * 1e3:.0f} ms of CPU "
        f"in {trained_s:.1f} s of training: {TimedReporter.cpu / trained_s * 100:.2f}% of a core, "
        f"{TimedReporter.cpu / (steps * rounds) * 1e6:.1f} us per step"
    )
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
