"""What attaching costs: time to the first full frame, and the attached viewer's CPU while a
job trains; for one checkout, or several side by side in one run (before and after a change).

    python benchmarks/attach_cost.py                          # this checkout
    python benchmarks/attach_cost.py --tree /tmp/old --tree .  # two checkouts, interleaved
    python benchmarks/attach_cost.py --quick                  # small sizes, for a smoke run

Attach: a fresh process opens the dashboard (headless, 160x48) on a run of N steps, alone
and with 3 copies of it overlaid (``attach RUN A B C``), and reports when both plots have
drawn every run's whole history; the same with `optitui attach` in a 160x48 tmux pane,
watching the screen (see ``tui_frames.py``, whose functions these are).

Viewer CPU: a job trains (a small MLP, 2 param groups, a cosine schedule, as fast as the
machine lets it, written by this checkout) while `optitui attach` follows it in a tmux pane;
the viewer process's CPU time over a window of seconds, as a share of one core. The job's
last step must be on the viewer's screen soon after the window ends.

Every measurement runs each checkout in turn (its own ``PYTHONPATH`` and working directory),
rounds interleaved, so a busy machine weighs on all of them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from compare_machine import Tmux, load1, proc_cpu_seconds
from tui_frames import attach_in_process, attach_in_tmux, write_store

HERE = Path(__file__).resolve().parent.parent

JOB = """
import sys, torch
from pathlib import Path
from torch import nn
from optitui.store.layout import create_run_dir
from optitui.trainer.core.job import Job
from optitui.trainer.loop.trainer import Trainer
run = Path(sys.argv[1])
torch.set_num_threads(1)
torch.manual_seed(0)
x, y = torch.randn(512, 32), torch.randn(512, 1)
batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 512, 32)]
model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))
opt = torch.optim.SGD([
    {"params": model[0].parameters(), "name": "body"},
    {"params": model[2].parameters(), "name": "head", "lr": 0.01},
], lr=0.05, momentum=0.9)
steps = int(sys.argv[2])
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
job = Job(model=model, optimizer=opt, train_data=batches, loss_fn=nn.functional.mse_loss,
          scheduler=sched)
paths = create_run_dir(run.parent, run.name, run)
Trainer(job, torch.device("cpu"), paths, max_steps=steps).run()
"""


@contextmanager
def tree(path: Path) -> Iterator[None]:
    """Child processes started inside run ``path``'s optitui (its PYTHONPATH and its folder:
    ``python -m`` and ``-c`` put the working directory first on the path)."""
    old_env, old_cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    os.environ["PYTHONPATH"] = str(path)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        if old_env is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_env


def viewer_cpu(work: Path, window: float) -> tuple[float, bool]:
    """(% of a core the attached viewer used while the job trained, whether its screen then
    showed the job's last step). The job is this checkout's; the viewer the current tree's."""
    run = work / f"job-{time.monotonic_ns()}"
    steps = 10_000_000  # stopped by the window, not by its length
    job = subprocess.Popen(
        [sys.executable, "-c", JOB, str(run), str(steps)],
        cwd=HERE,
        env={**os.environ, "PYTHONPATH": str(HERE)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    viewer = Tmux(f"exec env -u COLUMNS -u LINES {sys.executable} -m optitui attach {run}")
    viewer.command = f"cd {os.getcwd()} && " + viewer.command
    try:
        deadline = time.monotonic() + 60
        while not (run / "store.sqlite").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        viewer.start()
        if not viewer.wait_for(lambda s: "q quit" in s and "step" in s, 60):
            raise RuntimeError("the attached dashboard did not draw within 60 s")
        time.sleep(1.0)  # its first full frame
        cpu0, t0 = proc_cpu_seconds(viewer.pane_pid), time.monotonic()
        time.sleep(window)
        cpu1, t1 = proc_cpu_seconds(viewer.pane_pid), time.monotonic()
        job.terminate()
        job.wait(30)
        last = last_step(run)
        shown = viewer.wait_for(lambda s: f"step {last:,}" in s, 10)
        return (cpu1 - cpu0) / (t1 - t0) * 100, shown
    finally:
        if job.poll() is None:
            job.kill()
        viewer.close()


def last_step(run: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{run / 'store.sqlite'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT step FROM status WHERE id = 1").fetchone()[0])
    finally:
        conn.close()


def measure(
    trees: list[Path], rounds: int, what: Callable[[], float | None]
) -> dict[Path, list[float]]:
    out: dict[Path, list[float]] = {t: [] for t in trees}
    for r in range(rounds):
        order = trees if r % 2 == 0 else trees[::-1]
        for t in order:
            with tree(t):
                value = what()
            if value is not None:
                out[t].append(value)
    return out


def measure_pairs(
    trees: list[Path], rounds: int, what: Callable[[], tuple[float, float]]
) -> dict[Path, list[tuple[float, float]]]:
    out: dict[Path, list[tuple[float, float]]] = {t: [] for t in trees}
    for r in range(rounds):
        for t in trees if r % 2 == 0 else trees[::-1]:
            with tree(t):
                out[t].append(what())
    return out


def row(label: str, trees: list[Path], got: dict[Path, list[float]], unit: str) -> None:
    cells = []
    for t in trees:
        vals = got[t]
        if not vals:
            cells.append(f"{'-':>24}")
            continue
        each = " ".join(f"{v:.2f}" for v in vals)
        cells.append(f"{statistics.median(vals):>7.2f} {unit} ({each})")
    print(f"{label:<44} " + "  |  ".join(cells), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tree", action="append", type=Path, help="a checkout (repeat)")
    ap.add_argument("--quick", action="store_true", help="10k steps, 1 round, a short window")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=float, default=10.0, help="viewer CPU window, seconds")
    ap.add_argument("--viewer-only", action="store_true", help="only the viewer's CPU")
    args = ap.parse_args()
    trees = [t.resolve() for t in (args.tree or [HERE])]
    steps = 10_000 if args.quick else 1_000_000
    rounds = 1 if args.quick else args.rounds
    window = 2.0 if args.quick else args.window
    print(f"load average {load1():.2f}; checkouts: " + "  |  ".join(map(str, trees)))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        big = write_store(work / "run", steps)
        copies = []
        for i in range(3):
            copy = work / f"copy{i + 1}"
            subprocess.run(["cp", "-r", str(big), str(copy)], check=True)
            copies.append(copy)
        n = f"{steps:,}"
        for label, others in (
            [] if args.viewer_only else ((f"attach 1 x {n}", []), (f"attach 4 x {n}", copies))
        ):
            runs = measure_pairs(trees, rounds, lambda o=others: attach_in_process(big, steps, o))
            row(
                f"{label}, headless, wall",
                trees,
                {t: [w for w, _ in v] for t, v in runs.items()},
                "s",
            )
            row(
                f"{label}, headless, CPU",
                trees,
                {t: [c for _, c in v] for t, v in runs.items()},
                "s",
            )
            got = measure(trees, rounds, lambda o=others: attach_in_tmux(big, steps, o))
            row(f"{label}, tmux, wall", trees, got, "s")
        shown: dict[Path, list[bool]] = {t: [] for t in trees}

        def cpu() -> float:
            pct, ok = viewer_cpu(work, window)
            shown[Path(os.getcwd())].append(ok)
            return pct

        label = f"viewer CPU while a job trains ({window:g} s)"
        row(label, trees, measure(trees, rounds, cpu), "%")
        for t in trees:
            print(f"  {t}: the job's last step on screen after {sum(shown[t])}/{len(shown[t])}")
    print(f"load average {load1():.2f}")


if __name__ == "__main__":
    main()
