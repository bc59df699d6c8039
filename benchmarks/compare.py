"""optitui against what users would use instead: one command, side by side, one table.

    python benchmarks/compare.py            # the full run (about 20 minutes); writes RESULTS.md
    python benchmarks/compare.py --quick    # a smoke run of every row (under a minute);
                                            # writes to a temporary file, not RESULTS.md

Needs the ``bench`` extra (``pip install -e .[bench]``: tensorboard, trackio, wandb,
scikit-learn) and tmux for the rows that draw the dashboard in a real terminal. A
tool that is not installed gets its rows marked "skipped", with the reason.

1. Per-step host overhead and throughput against the bare loop, on two loops: a
   tiny step (the digits MLP on pre-made batches, ~0.2 ms) and a heavier one (a
   small conv net on generated 32x32 images, ~20 ms). Variants: the bare loop;
   the optitui trainer in-process (headless); the same with ``optitui attach``
   drawing it live from another process in a 160x48 tmux pane; ``optitui run
   --inline`` in a tmux pane (the loop in a thread of the process that draws the
   dashboard); TensorBoard's SummaryWriter, trackio and wandb (offline) logging
   the loss and every group's lr after each step of the bare loop. Every
   (variant, round) runs in a fresh process; variants are interleaved (rotated,
   and reversed every other round) and each round's bare run is the baseline its
   other variants are paired with. A run's cost per step is the time from its
   first to its last step after a warm-up tenth, from a timestamp per step
   (optitui's come from its own run store), so process start and tool start-up
   are left out; those are reported apart.
2. Host-device syncs per 1,000 steps: Tensor methods that read a value back to
   the host (item, tolist, cpu, __float__, ...) counted when called from a
   tool's own code, or from the user's logging call for that tool, as
   tests/test_hot_path.py counts them.
3. Dashboard frame cost against history length (tui_frames.frame_costs).
4. ``optitui attach`` to first full frame on a 1M-step run, and the viewer's
   memory (RSS) holding it (tui_frames.attach_in_process, and here in tmux).
5. Command latency: ``client.send`` to the job's acknowledgement, with the job
   (``optitui run --headless``) stepping every 1 ms and every 100 ms.
6. Checkpoint save of a ~100 MB model: time on the training thread (the host
   copy) against the total until the file is on disk (``saver.wait()``), next to
   a plain ``torch.save`` and how much training slows while the write runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for p in (str(REPO), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

RESULTS = BENCH / "RESULTS.md"
SIZE = (160, 48)

BARE = "bare loop"
HEADLESS = "optitui headless"
ATTACHED = "optitui + dashboard attached"
INLINE = "optitui --inline"
TB = "TensorBoard SummaryWriter"
TRACKIO = "trackio"
WANDB = "wandb (offline)"
VARIANTS = [BARE, HEADLESS, ATTACHED, INLINE, TB, TRACKIO, WANDB]
LOOPS = {
    "empty": "near-empty step: Linear(8, 8) + ReLU + Linear(8, 2), batch 8, pre-made batches",
    "tiny": "tiny step: digits MLP (64-128-64-10), batch 64, pre-made batches",
    "heavy": "heavier step: conv net (3-16-32 conv, 128 fc), batch 48, generated 32x32 images",
}


# ------------------------------------------------------------------------------------------
# the loops (also imported by the generated job scripts that `optitui run` loads)
# ------------------------------------------------------------------------------------------
def make_loop(loop: str) -> tuple[Any, Any, list[Any], Callable[..., Any]]:
    """(model, optimizer with two param groups, pre-made batches, loss_fn)."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    if loop == "tiny":
        from overhead import digits, model_and_opt

        ds = digits()
        batches = [ds[i : i + 64] for i in range(0, len(ds) - 63, 64)]
        model, opt = model_and_opt()
        return model, opt, batches, nn.functional.cross_entropy
    if loop == "empty":  # the tools' fixed cost per step, with little else to hide it
        torch.manual_seed(0)
        body, head = nn.Sequential(nn.Linear(8, 8), nn.ReLU()), nn.Linear(8, 2)
        opt = torch.optim.SGD(
            [{"params": body.parameters(), "lr": 0.05}, {"params": head.parameters(), "lr": 0.02}],
            momentum=0.9,
        )
        g = torch.Generator().manual_seed(0)
        batches = [
            (torch.randn(8, 8, generator=g), torch.randint(0, 2, (8,), generator=g))
            for _ in range(32)
        ]
        return nn.Sequential(body, head), opt, batches, nn.functional.cross_entropy
    if loop != "heavy":
        raise ValueError(loop)
    torch.manual_seed(0)
    features = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    head = nn.Sequential(nn.Linear(32 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(
        [
            {"params": features.parameters(), "lr": 0.02, "name": "features"},
            {"params": head.parameters(), "lr": 0.01, "name": "head"},
        ],
        momentum=0.9,
    )
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(48, 3, 32, 32, generator=g), torch.randint(0, 10, (48,), generator=g))
        for _ in range(16)
    ]
    return nn.Sequential(features, head), opt, batches, nn.functional.cross_entropy


class StepClock:
    """Wraps a loss_fn (same wrapper in every variant): notes the CPU time of the process
    (all its threads, plus its child processes') and the wall time when the ``first``-th
    and the ``last``-th call begin; with ``path``, writes them there at the last."""

    def __init__(
        self, loss_fn: Callable[..., Any], first: int, last: int, path: str | None = None
    ) -> None:
        self.loss_fn, self.first, self.last, self.path = loss_fn, first, last, path
        self.calls = 0
        self.marks: list[tuple[float, float]] = []

    def __call__(self, out: Any, target: Any) -> Any:
        self.calls += 1
        if self.calls == self.first or self.calls == self.last:
            self.marks.append((process_cpu(), time.time()))
            if self.path is not None and self.calls == self.last:
                Path(self.path).write_text(json.dumps(self.result()))
        return self.loss_fn(out, target)

    def result(self) -> dict[str, float]:
        (c0, w0), (c1, w1) = self.marks
        n = self.last - self.first
        return {"cpu_us": (c1 - c0) / n * 1e6, "clock_wall_us": (w1 - w0) / n * 1e6}


def process_cpu() -> float:
    """CPU seconds of this process and of its children still running (wandb's service)."""
    total = time.process_time()
    try:
        import psutil
    except ImportError:
        return total
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            t = child.cpu_times()
            total += t.user + t.system
    return total


def make_job(loop: str, steps: int | None = None, clock_file: str | None = None) -> Any:
    """The loop as an optitui Job; with ``clock_file``, its StepClock writes there."""
    from optitui.trainer.core.job import Job

    model, opt, batches, loss_fn = make_loop(loop)
    if clock_file is not None:
        assert steps is not None
        loss_fn = StepClock(loss_fn, steps // 10 + 1, steps, clock_file)
    return Job(model=model, optimizer=opt, train_data=batches, loss_fn=loss_fn)


def sleep_job(step_s: float) -> Any:
    """A job whose step is a sleep of ``step_s`` plus a tiny model (command latency)."""
    import torch
    from torch import nn

    from optitui.trainer.core.job import Job

    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    batch = (torch.randn(8, 4), torch.randn(8, 1))

    def step_fn(m: nn.Module, b: Any) -> torch.Tensor:
        time.sleep(step_s)
        return nn.functional.mse_loss(m(b[0]), b[1])

    return Job(model=model, optimizer=opt, train_data=[batch], step_fn=step_fn)


JOB_SCRIPT = """\
import sys
sys.path.insert(0, {bench!r})
import compare


def setup(device):
    return {call}
"""


def write_script(folder: Path, name: str, call: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(JOB_SCRIPT.format(bench=str(BENCH), call=call))
    return path


# ------------------------------------------------------------------------------------------
# machine facts
# ------------------------------------------------------------------------------------------
def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def version_of(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def git_revision() -> str:
    """The commit measured, with "+ uncommitted changes" when the tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "optitui"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + (" + uncommitted changes under optitui/" if dirty else "")


def proc_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


# ------------------------------------------------------------------------------------------
# a program in a real terminal: a tmux pane of a fixed size
# ------------------------------------------------------------------------------------------
class Tmux:
    def __init__(self, command: str, size: tuple[int, int] = SIZE) -> None:
        self._dir = tempfile.mkdtemp(prefix="optitui-bench-tmux-")
        self.sock = str(Path(self._dir) / "sock")
        self.command = command
        self.size = size
        self.pane_pid = 0
        self.server_pid = 0

    def tmux(self, *args: str) -> str:
        res = subprocess.run(
            ["tmux", "-f", "/dev/null", "-S", self.sock, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        return res.stdout

    def start(self) -> None:
        w, h = self.size
        self.tmux(
            "new-session",
            "-d",
            "-s",
            "b",
            "-x",
            str(w),
            "-y",
            str(h),
            "-c",
            str(REPO),
            self.command,
        )
        pids = self.tmux("display-message", "-p", "-t", "b", "#{pane_pid} #{pid}").split()
        self.pane_pid, self.server_pid = int(pids[0]), int(pids[1])

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "b")

    def wait_for(self, ok: Callable[[str], bool], timeout: float, poll: float = 0.01) -> bool:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if ok(self.screen()):
                return True
            time.sleep(poll)
        return False

    def close(self) -> None:
        self.tmux("kill-server")
        shutil.rmtree(self._dir, ignore_errors=True)


def optitui_command(*args: str) -> str:
    """A shell command line running ``python -m optitui ARGS`` as the pane's process."""
    quoted = " ".join(f"'{a}'" for a in args)
    return f"exec env -u COLUMNS -u LINES OMP_NUM_THREADS=1 {sys.executable} -m optitui {quoted}"


def axis_end(steps: int) -> str:
    """How the plots' x axis labels the last step (1k, 10k, 1M)."""
    if steps >= 1_000_000:
        return f"{steps / 1e6:.3g}M"
    if steps >= 1000:
        return f"{steps / 1e3:.3g}k"
    return str(steps)


def shows_all(steps: int) -> Callable[[str], bool]:
    """The status bar has the last step and both plots' x axes end there."""
    return lambda s: f"step {steps:,}" in s and s.count(axis_end(steps)) >= 2


# ------------------------------------------------------------------------------------------
# worker side: one variant of one loop, in a fresh process
# ------------------------------------------------------------------------------------------
def summarize_times(times: list[float], warm: int) -> dict[str, float]:
    t = times[warm:]
    diffs = sorted(b - a for a, b in itertools.pairwise(t))
    return {
        "mean_us": (t[-1] - t[0]) / (len(t) - 1) * 1e6,
        "median_us": diffs[len(diffs) // 2] * 1e6,
        "p99_us": diffs[int(0.99 * (len(diffs) - 1))] * 1e6,
    }


def bare_loop(
    model: Any,
    opt: Any,
    batches: list[Any],
    loss_fn: Callable[..., Any],
    steps: int,
    hook: Callable[[int, Any, Any], None] | None = None,
) -> list[float]:
    """The loop users write, with a timestamp per step; ``hook`` is the user's logging call."""
    times = [0.0] * steps
    done = 0
    while done < steps:
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if hook is not None:
                hook(done, loss, opt)
            times[done] = time.time()
            done += 1
            if done == steps:
                break
    return times


def tool_hook(variant: str, tmp: Path, name: str) -> tuple[Callable[..., None], Callable[[], None]]:
    """(log(step, loss, optimizer), close()) for a logging tool, set up as its docs show."""
    if variant == TB:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(tmp / "tb" / name))

        def log_tb(step: int, loss: Any, opt: Any) -> None:
            writer.add_scalar("loss", loss, step)  # a tensor: add_scalar reads it
            for i, g in enumerate(opt.param_groups):
                writer.add_scalar(f"lr/{i}", g["lr"], step)

        return log_tb, writer.close
    if variant == TRACKIO:
        import trackio

        trackio.init(project="optitui-bench", name=name, embed=False)

        def log_trackio(step: int, loss: Any, opt: Any) -> None:
            # trackio takes JSON values only (a tensor is dropped with a warning)
            values = {"loss": loss.item()}
            for i, g in enumerate(opt.param_groups):
                values[f"lr/{i}"] = g["lr"]
            trackio.log(values)

        return log_trackio, trackio.finish
    if variant == WANDB:
        import wandb

        run = wandb.init(project="optitui-bench", name=name, mode="offline", dir=str(tmp))

        def log_wandb(step: int, loss: Any, opt: Any) -> None:
            values = {"loss": loss}  # wandb converts tensors itself (.item())
            for i, g in enumerate(opt.param_groups):
                values[f"lr/{i}"] = g["lr"]
            run.log(values)

        return log_wandb, run.finish
    raise ValueError(variant)


def store_times(run_dir: Path) -> list[float]:
    from optitui.store.reader import RunReader

    with RunReader(run_dir) as r:
        return list(r.read_metrics().columns["time"])


def run_variant(variant: str, loop: str, steps: int, tmp: Path, tag: str) -> dict[str, Any]:
    """Train ``steps`` steps of ``loop`` under ``variant``; per-step timestamps and extras."""
    import torch

    from optitui.store.layout import create_run_dir
    from optitui.trainer.core.job import Job
    from optitui.trainer.loop.trainer import Trainer

    slug = "".join(c if c.isalnum() else "_" for c in variant).strip("_")
    name = f"{loop}-{tag}-{slug}"
    extra: dict[str, Any] = {}
    if variant == INLINE:
        return run_inline(loop, steps, tmp, name)
    model, opt, batches, plain_loss = make_loop(loop)
    loss_fn = StepClock(plain_loss, steps // 10 + 1, steps)
    if variant in (BARE, TB, TRACKIO, WANDB):
        t0 = time.time()
        hook, close = (None, None) if variant == BARE else tool_hook(variant, tmp, name)
        times = bare_loop(model, opt, batches, loss_fn, steps, hook)
        t_last = time.time()
        if close is not None:
            close()
        return {
            "times": times,
            "setup_s": times[0] - t0,
            "close_s": time.time() - t_last,
            **loss_fn.result(),
        }
    job = Job(model=model, optimizer=opt, train_data=batches, loss_fn=loss_fn)
    t0 = time.time()
    paths = create_run_dir(tmp, name, tmp / name)
    trainer = Trainer(job, torch.device("cpu"), paths, max_steps=steps)
    built = time.time() - t0
    viewer = None
    if variant == ATTACHED:
        viewer = Tmux(optitui_command("attach", str(paths.root)))
        viewer.start()
        if not viewer.wait_for(lambda s: "q quit" in s and "step" in s, 60):
            viewer.close()
            raise RuntimeError("the attached dashboard did not draw within 60 s")
        time.sleep(0.5)  # its first full frame, then training starts
        cpu0, tcpu0 = proc_cpu_seconds(viewer.pane_pid), proc_cpu_seconds(viewer.server_pid)
    elif variant != HEADLESS:
        raise ValueError(variant)
    t_run = time.time()
    trainer.run()
    t_end = time.time()
    times = store_times(paths.root)
    if viewer is not None:
        cpu1, tcpu1 = proc_cpu_seconds(viewer.pane_pid), proc_cpu_seconds(viewer.server_pid)
        span = t_end - t_run
        extra["viewer_cpu_pct"] = (cpu1 - cpu0) / span * 100
        extra["terminal_cpu_pct"] = (tcpu1 - tcpu0) / span * 100
        extra["viewer_drew_last_step"] = viewer.wait_for(shows_all(steps), 10)
        viewer.close()
    return {
        "times": times,
        "setup_s": built + times[0] - t_run,
        "close_s": t_end - times[-1],
        **loss_fn.result(),
        **extra,
    }


def run_inline(loop: str, steps: int, tmp: Path, name: str) -> dict[str, Any]:
    """``optitui run SCRIPT --inline`` in a tmux pane: the loop in a thread of the process
    that draws the dashboard; timestamps from its run store."""
    from optitui.store.reader import RunReader

    clock = tmp / f"{name}.clock.json"
    script = write_script(
        tmp,
        f"job_{name.replace('-', '_')}",
        f"compare.make_job({loop!r}, {steps}, {str(clock)!r})",
    )
    run_dir = tmp / name
    if run_dir.exists():
        raise FileExistsError(run_dir)
    pane = Tmux(
        optitui_command(
            "run",
            str(script),
            "--inline",
            "--device",
            "cpu",
            "--run-dir",
            str(run_dir),
            "--max-steps",
            str(steps),
        )
    )
    pane.start()
    try:
        deadline = time.time() + 600
        state = ""
        while time.time() < deadline:
            if (run_dir / "store.sqlite").exists():
                with contextlib.suppress(Exception), RunReader(run_dir) as r:
                    state = r.status().state
                if state in ("finished", "stopped", "failed", "crashed"):
                    break
            time.sleep(0.1)
        if state != "finished":
            raise RuntimeError(f"the --inline run ended {state or 'never'}: {pane.screen()[-800:]}")
        drew = pane.wait_for(shows_all(steps), 10)
    finally:
        pane.close()
    times = store_times(run_dir)
    return {
        "times": times,
        "setup_s": None,
        "close_s": None,
        "viewer_drew_last_step": drew,
        **json.loads(clock.read_text()),
    }


def paired_runs(
    loop: str, steps: int, rounds: int, variants: list[str], tmp: Path
) -> list[dict[str, Any]]:
    """``variants`` one after the other in this one process, ``rounds`` times (order rotated):
    a round's runs are seconds apart, so the machine's load is about the same for all."""
    out = []
    for i, order in enumerate(orders(variants, rounds)):
        got = {}
        for v in order:
            r = run_variant(v, loop, steps, tmp, f"p{i}")
            times = r.pop("times")
            got[v] = {**r, **summarize_times(times, steps // 10)}
        out.append(got)
    return out


# ------------------------------------------------------------------------------------------
# sync counting (worker side)
# ------------------------------------------------------------------------------------------
READS = ("item", "tolist", "cpu", "__float__", "__int__", "__bool__", "__index__", "__format__")
# .numpy() is left out: on an accelerator it only works on a host copy, so the .cpu() (or
# .item(), .tolist()) before it is the sync. .to("cpu") is left out too: the trainer's own
# batch moves call .to(device), which on this CPU-only machine cannot be told apart.


class SyncCounter:
    """Counts reads of tensor values made from ``dirs`` (any thread) or from inside the
    user's logging call (``in_hook``, main thread). Nested reads (``__format__`` calling
    ``item``) count once."""

    def __init__(self) -> None:
        import torch

        self.dirs: tuple[str, ...] = ()
        self.in_hook = False
        self.counts: Counter[str] = Counter()
        self._main = threading.get_ident()
        self._local = threading.local()
        self._originals = {n: getattr(torch.Tensor, n) for n in READS}
        for n, original in self._originals.items():
            setattr(torch.Tensor, n, self._wrap(n, original))

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        counter = self

        def wrapper(self: Any, *a: Any, **k: Any) -> Any:
            local = counter._local
            if getattr(local, "inside", False):
                return original(self, *a, **k)
            caller = sys._getframe(1).f_code.co_filename
            if (counter.in_hook and threading.get_ident() == counter._main) or (
                counter.dirs and caller.startswith(counter.dirs)
            ):
                counter.counts[name] += 1
            local.inside = True
            try:
                return original(self, *a, **k)
            finally:
                local.inside = False

        return wrapper

    def restore(self) -> None:
        import torch

        for n, original in self._originals.items():
            setattr(torch.Tensor, n, original)


def package_dirs(variant: str) -> tuple[str, ...]:
    def where(mod: str) -> str:
        spec = importlib.util.find_spec(mod)
        assert spec is not None and spec.origin is not None
        return str(Path(spec.origin).parent)

    if variant == HEADLESS:
        return (where("optitui"),)
    if variant == TB:
        return (where("torch.utils.tensorboard"), where("tensorboard"))
    return (where({TRACKIO: "trackio", WANDB: "wandb"}[variant]),)


def count_syncs(variant: str, loop: str, steps: int, tmp: Path) -> dict[str, Any]:
    import torch

    from optitui.store.layout import create_run_dir
    from optitui.trainer.core.job import Job
    from optitui.trainer.loop.trainer import Trainer

    model, opt, batches, loss_fn = make_loop(loop)
    counter = SyncCounter()
    try:
        if variant == HEADLESS:
            job = Job(model=model, optimizer=opt, train_data=batches, loss_fn=loss_fn)
            paths = create_run_dir(tmp, f"syncs-{loop}", tmp / f"syncs-{loop}")
            trainer = Trainer(job, torch.device("cpu"), paths, max_steps=steps)
            counter.dirs = package_dirs(variant)
            trainer.run()
        else:
            hook, close = tool_hook(variant, tmp, f"syncs-{loop}")

            def counted(step: int, loss: Any, o: Any) -> None:
                counter.in_hook = True
                try:
                    hook(step, loss, o)
                finally:
                    counter.in_hook = False

            counter.dirs = package_dirs(variant)
            bare_loop(model, opt, batches, loss_fn, steps, counted)
            close()
    finally:
        counter.dirs = ()
        counter.restore()
    total = sum(counter.counts.values())
    return {"reads": total, "per_1000": total * 1000 / steps, "by_method": dict(counter.counts)}


# ------------------------------------------------------------------------------------------
# checkpoint save (worker side)
# ------------------------------------------------------------------------------------------
def checkpoint_bench(layers: int, width: int, reps: int, tmp: Path) -> dict[str, Any]:
    import torch
    from torch import nn

    from optitui.store.layout import create_run_dir
    from optitui.trainer.control.saver import Policy, Saver
    from optitui.trainer.core.job import Job
    from optitui.trainer.loop.trainer import Trainer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    job = Job(
        model=model,
        optimizer=opt,
        train_data=[(torch.randn(4, width), torch.randn(4, width))],
        loss_fn=nn.functional.mse_loss,
    )
    paths = create_run_dir(tmp, "ckpt", tmp / "ckpt")
    trainer = Trainer(job, torch.device("cpu"), paths)
    saver = Saver(trainer, Policy(keep_last=reps + 1))

    # what training does while the write runs: the tiny loop's steps, timed
    tm, topt, tbatches, tloss = make_loop("tiny")

    def steps_until(done: threading.Event, limit: float) -> float:
        n, t0 = 0, time.perf_counter()
        while not done.is_set() and time.perf_counter() - t0 < limit:
            for x, y in tbatches[:4]:
                topt.zero_grad(set_to_none=True)
                tloss(tm(x), y).backward()
                topt.step()
                n += 1
        return (time.perf_counter() - t0) / max(n, 1)

    on_thread, total, plain, plain_fsync, step_during, step_before = [], [], [], [], [], []
    for i in range(reps):
        quiet = threading.Event()
        timer = threading.Timer(1.0, quiet.set)
        timer.start()
        step_before.append(steps_until(quiet, 2.0))
        written = threading.Event()
        t0 = time.perf_counter()
        saver.save("manual", tag=f"bench{i}")
        t1 = time.perf_counter()
        waiter = threading.Thread(target=lambda ev=written: (saver.wait(), ev.set()))
        waiter.start()
        step_during.append(steps_until(written, 120.0))
        waiter.join()
        t2 = time.perf_counter()
        on_thread.append(t1 - t0)
        total.append(t2 - t0)
        # what a user's loop does: torch.save on the training thread
        path = tmp / f"plain{i}.pt"
        t0 = time.perf_counter()
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, path)
        t1 = time.perf_counter()
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        t2 = time.perf_counter()
        plain.append(t1 - t0)
        plain_fsync.append(t2 - t0)
        path.unlink()
    saver.close()
    trainer.recorder.close()
    size = sum(f.stat().st_size for f in paths.checkpoints.rglob("*") if f.is_file()) / reps
    return {
        "params": params,
        "file_mb": size / 1e6,
        "on_thread": on_thread,
        "total": total,
        "plain": plain,
        "plain_fsync": plain_fsync,
        "step_before": step_before,
        "step_during": step_during,
    }


def worker(spec: dict[str, Any]) -> Any:
    """One job of the parent's, in this fresh process; a list of jobs gives a list of
    results (an exception becomes {"error": ...} so the others still run)."""
    tmp = Path(spec["tmp"])
    kind = spec["kind"]
    if "jobs" in spec:
        out = []
        for job in spec["jobs"]:
            try:
                out.append(worker({**job, "tmp": spec["tmp"], "kind": kind}))
            except Exception as exc:
                out.append({"error": f"{type(exc).__name__}: {exc}"})
        return out
    if kind == "overhead":
        out = run_variant(spec["variant"], spec["loop"], spec["steps"], tmp, spec["tag"])
        times = out.pop("times")
        if len(times) != spec["steps"]:
            raise RuntimeError(f"{len(times)} step timestamps, expected {spec['steps']}")
        return {**out, **summarize_times(times, spec["steps"] // 10)}
    if kind == "syncs":
        return count_syncs(spec["variant"], spec["loop"], spec["steps"], tmp)
    if kind == "paired":
        return paired_runs(spec["loop"], spec["steps"], spec["rounds"], spec["variants"], tmp)
    if kind == "checkpoint":
        return checkpoint_bench(spec["layers"], spec["width"], spec["reps"], tmp)
    raise ValueError(kind)


def call_worker(spec: dict[str, Any], timeout: float = 900) -> Any:
    """Run ``worker(spec)`` in a fresh interpreter; its result, or raise with its stderr."""
    with tempfile.TemporaryDirectory(prefix="optitui-bench-") as tmp:
        spec = {**spec, "tmp": tmp}
        result = Path(tmp) / "result.json"
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "TRACKIO_DIR": str(Path(tmp) / "trackio"),
            "WANDB_MODE": "offline",
            "WANDB_DIR": tmp,
            "WANDB_SILENT": "true",
            "PYTHONWARNINGS": "ignore",
        }
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec), "--result", str(result)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0 or not result.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
            raise RuntimeError(" | ".join(tail) or f"worker exited {proc.returncode}")
        return json.loads(result.read_text())


# ------------------------------------------------------------------------------------------
# parent side: the sections
# ------------------------------------------------------------------------------------------
def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float], fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(min(xs))}..{fmt.format(max(xs))}"


def available(variants: list[str]) -> dict[str, str]:
    """variant -> why it is skipped (only the skipped ones)."""
    skipped = {}
    need = {TB: "tensorboard", TRACKIO: "trackio", WANDB: "wandb"}
    for v, mod in need.items():
        if v in variants and importlib.util.find_spec(mod) is None:
            skipped[v] = f"skipped: {mod} not installed (pip install -e .[bench])"
    if shutil.which("tmux") is None:
        for v in (ATTACHED, INLINE):
            skipped[v] = "skipped: tmux not installed (it gives the dashboard a real terminal)"
    return skipped


def orders(variants: list[str], rounds: int) -> Iterator[list[str]]:
    """Rotate the order every round and reverse it every other round."""
    for r in range(rounds):
        k = r % len(variants)
        order = variants[k:] + variants[:k]
        yield order if r % 2 == 0 else order[::-1]


def overhead_section(
    loop: str,
    steps: int,
    rounds: int,
    skipped: dict[str, str],
    log: Callable[[str], None],
    one_process: bool = False,
) -> dict[str, Any]:
    """Every variant ``rounds`` times, interleaved; each run in a fresh process (or, with
    ``one_process``, a round's runs in one process: quicker, for the smoke run)."""
    variants = [v for v in VARIANTS if v not in skipped]
    results: dict[str, list[dict[str, Any] | None]] = {v: [] for v in variants}
    errors: dict[str, str] = {}
    loads = []
    for r, order in enumerate(orders(variants, rounds)):
        loads.append(load1())
        jobs = [{"variant": v, "loop": loop, "steps": steps, "tag": f"r{r}"} for v in order]
        batches = [jobs] if one_process else [[j] for j in jobs]
        for batch in batches:
            t0 = time.perf_counter()
            try:
                got = call_worker({"kind": "overhead", "jobs": batch})
            except Exception as exc:
                got = [{"error": str(exc)} for _ in batch]
            for job, res in zip(batch, got, strict=True):
                v = job["variant"]
                if "error" in res:
                    errors[v] = res["error"][:300]
                    results[v].append(None)
                else:
                    results[v].append(res)
                log(
                    f"  {loop} round {r + 1}/{rounds} {v}: "
                    + (f"FAILED {errors[v]}" if "error" in res else f"{res['mean_us']:.1f} us/step")
                    + f" ({time.perf_counter() - t0:.1f} s, load {load1():.2f})"
                )
    return {"results": results, "errors": errors, "loads": loads, "steps": steps, "rounds": rounds}


def overhead_rows(sec: dict[str, Any], skipped: dict[str, str]) -> tuple[list[str], dict[str, Any]]:
    """Markdown rows, and per-variant numbers for the targets."""
    res, errors = sec["results"], sec["errors"]
    bare = res.get(BARE, [])
    rows, numbers = [], {}
    dashes = " - |" * 7
    for v in VARIANTS:
        if v in skipped:
            rows.append(f"| {v} |{dashes} {skipped[v]} |")
            continue
        runs = res[v]
        pairs = [(x, b) for x, b in zip(runs, bare, strict=True) if x is not None and b is not None]
        if not pairs:
            rows.append(f"| {v} |{dashes} failed: {errors.get(v, '?')} |")
            continue
        wall = [x["mean_us"] for x, _ in pairs]
        cpu = [x["cpu_us"] for x, _ in pairs]
        added = [x["mean_us"] - b["mean_us"] for x, b in pairs]
        added_cpu = [x["cpu_us"] - b["cpu_us"] for x, b in pairs]
        ratio = [b["mean_us"] / x["mean_us"] for x, b in pairs]
        setup = [x["setup_s"] for x, _ in pairs if x.get("setup_s") is not None]
        close = [x["close_s"] for x, _ in pairs if x.get("close_s") is not None]
        notes = []
        if len(pairs) < len(runs):
            notes.append(f"{len(runs) - len(pairs)} run(s) failed: {errors.get(v, '?')}")
        if v == ATTACHED:
            vcpu = [x["viewer_cpu_pct"] for x, _ in pairs]
            term = [x["terminal_cpu_pct"] for x, _ in pairs]
            drew = sum(bool(x["viewer_drew_last_step"]) for x, _ in pairs)
            notes.append(
                f"the viewer process used {med(vcpu):.0f}% of a core (tmux {med(term):.0f}%); "
                f"its screen showed the last step in {drew}/{len(pairs)} runs"
            )
        if v == INLINE:
            drew = sum(bool(x["viewer_drew_last_step"]) for x, _ in pairs)
            notes.append(
                f"CPU includes drawing; the screen showed the last step in {drew}/{len(pairs)} runs"
            )
        if v == WANDB:
            notes.append("CPU includes its service process")

        def plusminus(xs: list[float]) -> str:
            return f"{med(xs):+.1f} [{spread(xs, '{:+.1f}')}]"

        rows.append(
            f"| {v} | {med(wall):.1f} | "
            + ("-" if v == BARE else plusminus(added))
            + f" | {med(cpu):.1f} | "
            + ("-" if v == BARE else plusminus(added_cpu))
            + " | "
            + ("1" if v == BARE else f"{med(ratio):.3f} [{spread(ratio, '{:.3f}')}]")
            + " | "
            + (f"{med(setup):.2f}" if setup else "n/a")
            + " | "
            + (f"{med(close):.2f}" if close else "n/a")
            + f" | {'; '.join(notes)} |"
        )
        numbers[v] = {
            "added": med(added),
            "added_cpu": med(added_cpu),
            "ratio": med(ratio),
            "spread": (min(added), max(added)),
            "spread_cpu": (min(added_cpu), max(added_cpu)),
        }
    return rows, numbers


def paired_section(
    loop: str,
    steps: int,
    rounds: int,
    variants: list[str],
    skipped: dict[str, str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    left_out = {v: skipped[v] for v in variants if v in skipped}
    variants = [v for v in variants if v not in skipped]
    got = call_worker(
        {"kind": "paired", "loop": loop, "steps": steps, "rounds": rounds, "variants": variants}
    )
    out: dict[str, Any] = {
        "loop": loop,
        "steps": steps,
        "rounds": rounds,
        "bare": [r[BARE]["mean_us"] for r in got],
        "bare_cpu": [r[BARE]["cpu_us"] for r in got],
        "variants": {},
        "skipped": left_out,
        "load": load1(),
    }
    for v in variants[1:]:
        x = {
            "wall": [r[v]["mean_us"] - r[BARE]["mean_us"] for r in got],
            "cpu": [r[v]["cpu_us"] - r[BARE]["cpu_us"] for r in got],
            "ratio": [r[BARE]["mean_us"] / r[v]["mean_us"] for r in got],
        }
        out["variants"][v] = x
        log(
            f"  {loop}, {v}: wall {med(x['wall']):+.1f} us, CPU {med(x['cpu']):+.1f} us, "
            f"ratio {med(x['ratio']):.3f}"
        )
    return out


def quartiles(xs: list[float], fmt: str) -> str:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return f"{fmt.format(q[1])} (IQR {fmt.format(q[0])}..{fmt.format(q[2])})"


def syncs_section(
    steps: dict[str, int], skipped: dict[str, str], log: Callable[[str], None]
) -> dict[str, Any]:
    """Every tool on every loop, one after the other in one process."""
    tools = [v for v in (HEADLESS, TB, TRACKIO, WANDB) if v not in skipped]
    jobs = [{"variant": v, "loop": lp, "steps": n} for v in tools for lp, n in steps.items()]
    try:
        got = call_worker({"kind": "syncs", "jobs": jobs})
    except Exception as exc:
        got = [{"error": str(exc)} for _ in jobs]
    out: dict[str, Any] = {v: skipped[v] for v in (HEADLESS, TB, TRACKIO, WANDB) if v in skipped}
    for job, res in zip(jobs, got, strict=True):
        per = out.setdefault(job["variant"], {})
        per[job["loop"]] = f"failed: {res['error'][:200]}" if "error" in res else res
        log(f"  syncs {job['variant']} {job['loop']}: {per[job['loop']]}")
    return out


def frames_section(
    sizes: list[int], frames: int, tmp: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    import tui_frames

    runs: dict[int, Path] = {}
    rows: dict[int, Any] = {}
    for n in sizes:
        t0 = time.perf_counter()
        runs[n] = tui_frames.write_store(tmp / f"hist{n}", n)
        log(f"  wrote a {n:,}-step store in {time.perf_counter() - t0:.1f} s")
    for n in sizes:
        f = asyncio.run(tui_frames.frame_costs(runs[n], n, frames))
        rows[n] = {
            "cpu": med(f.cpu) * 1e3,
            "cpu_p90": tui_frames.p90(f.cpu),
            "wall": med(f.wall) * 1e3,
            "wall_p90": tui_frames.p90(f.wall),
            "decimation": med(f.decimation) * 1e3,
            "load": load1(),
        }
        log(f"  frames at {n:,}: {rows[n]}")
    return {"rows": rows, "runs": runs}


def attach_in_tmux(run: Path, steps: int, timeout: float = 60) -> dict[str, float]:
    """``optitui attach`` in a 160x48 tmux pane: seconds to the full history on screen,
    then the viewer's memory (RSS now, and its peak) and the CPU time it used."""
    pane = Tmux(optitui_command("attach", str(run)))
    t0 = time.perf_counter()
    pane.start()
    try:
        if not pane.wait_for(shows_all(steps), timeout, poll=0.005):
            raise RuntimeError(f"attach did not show {steps:,} steps in {timeout} s")
        wall = time.perf_counter() - t0
        time.sleep(0.5)  # settle: what it holds while it keeps drawing
        mem = proc_memory_kib(pane.pane_pid)
        cpu = proc_cpu_seconds(pane.pane_pid)
    finally:
        pane.close()
    return {"wall": wall, "rss_mb": mem["VmRSS"] / 1024, "hwm_mb": mem["VmHWM"] / 1024, "cpu": cpu}


def attach_section(runs: dict[int, Path], reps: int, log: Callable[[str], None]) -> dict[str, Any]:
    import tui_frames

    big, small = max(runs), min(runs)
    inproc = [tui_frames.attach_in_process(runs[big], big) for _ in range(reps)]
    log(f"  attach in process: {inproc}")
    out: dict[str, Any] = {"steps": big, "small": small, "inproc": inproc}
    if shutil.which("tmux") is None:
        out["tmux"] = None
        return out
    out["tmux"] = [attach_in_tmux(runs[big], big) for _ in range(reps)]
    log(f"  attach in tmux: {out['tmux']}")
    out["tmux_small"] = [attach_in_tmux(runs[small], small) for _ in range(max(1, reps // 2))]
    log(f"  attach in tmux, {small:,} steps: {out['tmux_small']}")
    return out


def commands_section(
    step_times: list[float], n: int, tmp: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    from optitui.store import client
    from optitui.store.layout import RunPaths
    from optitui.store.reader import RunReader

    out: dict[str, Any] = {}
    for step_s in step_times:
        label = f"{step_s * 1e3:g} ms"
        script = write_script(tmp, f"sleep_{int(step_s * 1e6)}", f"compare.sleep_job({step_s!r})")
        run_dir = tmp / f"cmd{int(step_s * 1e6)}"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "optitui",
                "run",
                str(script),
                "--headless",
                "--device",
                "cpu",
                "--run-dir",
                str(run_dir),
            ],
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        paths = RunPaths(run_dir)
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                if paths.db.exists():
                    with contextlib.suppress(Exception), RunReader(run_dir) as r:
                        if r.status().step >= 5:
                            break
                time.sleep(0.05)
            else:
                raise RuntimeError("the sleeping job did not start")
            applied, visible, returned = [], [], []
            rng = random.Random(0)
            with RunReader(run_dir) as reader:
                for i in range(2 * n):
                    time.sleep(rng.uniform(0.02, 0.02 + step_s))  # any phase of the step
                    args = {"values": {"lr": 0.01 if i % 2 else 0.02}}
                    if i % 2 == 0:  # what `optitui send` and the dashboard's pending marks see
                        t0 = time.time()
                        sent = client.send(paths, "set", args, timeout=10)
                        returned.append(time.time() - t0)
                    else:  # the store watched every millisecond: when the answer is readable
                        t0 = time.time()
                        sent = client.send(paths, "set", args, timeout=0)
                        while (o := reader.outcome(sent.id)) is None:
                            time.sleep(0.001)
                        visible.append(time.time() - t0)
                        sent = client.Sent(sent.id, o)
                    assert sent.outcome is not None and sent.outcome.applied, sent
                    applied.append(sent.outcome.time - t0)
            client.send(paths, "stop", {}, timeout=30)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out[label] = {
            "step_s": step_s,
            "applied": applied,
            "visible": visible,
            "returned": returned,
            "load": load1(),
        }
        log(
            f"  commands at {label}: applied {med(applied) * 1e3:.1f} ms, "
            f"visible {med(visible) * 1e3:.1f} ms, returned {med(returned) * 1e3:.1f} ms"
        )
    return out


# ------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------
def verdict(a: bool, b: bool, a_name: str, b_name: str) -> str:
    if a and b:
        return "met"
    if not a and not b:
        return "missed"
    return f"{a_name if a else b_name} met, {b_name if a else a_name} missed"


def noisy_verdict(h: dict[str, Any]) -> str:
    """The verdict on a median, with how far apart the rounds were."""
    width = h["spread"][1] - h["spread"][0]
    if width >= 1000:
        return f"not resolved: rounds differ by {width:.0f} us; the paired rows are sharper"
    v = verdict(h["added_cpu"] <= 10, h["added"] <= 10, "CPU", "wall")
    return v if width < 100 else f"{v} (rounds differ by {width:.0f} us; see the paired rows)"


def stat_row(label: str, xs: list[float], fmt: str = "{:.2f}") -> str:
    return f"| {label} | {fmt.format(med(xs))} | {spread(xs, fmt)} |"


def ms(xs: list[float]) -> str:
    return f"{med(xs) * 1e3:.1f} / {max(xs) * 1e3:.1f}"


def report(data: dict[str, Any]) -> str:
    L: list[str] = []
    env = data["env"]
    L += [
        "# optitui against the alternatives, measured side by side",
        "",
        f"`{env['command']}` on {env['date']}, optitui at {env['revision']}: "
        f"{env['cpu']}, {env['cores']} cores, "
        f"Linux {env['kernel']}, Python {env['python']}, torch {env['torch']}, "
        + ", ".join(f"{k} {v}" for k, v in env["tools"].items())
        + ". Training runs on 1 thread (`torch.set_num_threads(1)`).",
        "",
        f"1-minute load average: {env['load_start']:.2f} at the start, "
        f"{env['load_end']:.2f} at the end; each section gives its own. The machine is "
        "shared: other processes' load shows as spread.",
        "",
    ]
    targets: list[tuple[str, str, str]] = []
    skipped = data["skipped"]
    for loop, sec in data.get("overhead", {}).items():
        rows, numbers = overhead_rows(sec, skipped)
        loads = sec["loads"]
        L += [
            f"## 1. Per-step host overhead, {LOOPS[loop]}",
            "",
            f"{sec['steps']:,} steps per run (the first tenth is warm-up, not counted), "
            f"{sec['rounds']} rounds, every run in a fresh process, variants interleaved; "
            f"load average {med(loads):.2f} (range {spread(loads, '{:.2f}')}). "
            "*us/step*: wall time per step (median over rounds). *added*: minus the same "
            "round's bare loop, median [min..max] over rounds. *CPU*: CPU time of the "
            "training process per step, all its threads (the attached viewer is another "
            "process: its share is in the notes). Throughput is bare / variant (wall). "
            "Start-up: the tool's init to the end of the first step; close: the last step "
            "to the tool closed (final flushes, joins).",
            "",
            "| variant | us/step | added us/step | CPU us/step | added CPU us/step "
            "| throughput vs bare | start-up s | close s | notes |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            *rows,
            "",
        ]
        h = numbers.get(HEADLESS)
        if h is not None:
            targets.append(
                (
                    f"optitui headless adds <= 10 us of host work per step ({loop} step)",
                    f"CPU {h['added_cpu']:+.1f} us "
                    f"[{h['spread_cpu'][0]:+.1f}..{h['spread_cpu'][1]:+.1f}], "
                    f"wall {h['added']:+.1f} us [{h['spread'][0]:+.1f}..{h['spread'][1]:+.1f}]",
                    noisy_verdict(h),
                )
            )
            if loop == "tiny":
                targets.append(
                    (
                        "optitui headless within 2% of the bare loop (tiny step)",
                        f"throughput {h['ratio']:.3f}",
                        "met" if h["ratio"] >= 0.98 else "missed",
                    )
                )
        for v in (ATTACHED, INLINE):
            x = numbers.get(v)
            if x is not None and loop == "tiny":
                targets.append(
                    (
                        f"{v}: <= 10 us per step, within 2% (tiny step)",
                        f"CPU {x['added_cpu']:+.1f} us, wall {x['added']:+.1f} us, "
                        f"throughput {x['ratio']:.3f}",
                        verdict(x["added_cpu"] <= 10, x["ratio"] >= 0.98, "CPU", "throughput"),
                    )
                )
    for n, pr in enumerate(data.get("paired", [])):
        # the first pairing is optitui alone, the second every tool (some may be skipped)
        title = (
            "optitui headless against the bare loop"
            if n == 0
            else ("every tool's fixed cost per step")
        )
        L += [
            f"### 1{'bcd'[n]}. {title}, paired in one process: {LOOPS[pr['loop']]}",
            "",
            f"{pr['rounds']} rounds of {pr['steps']:,}-step runs, the variants one after the "
            "other in one process (order rotated), so each round's runs see about the same "
            f"load (load average {pr['load']:.2f} at the end). The bare loop: "
            f"{med(pr['bare']):.1f} us/step wall, {med(pr['bare_cpu']):.1f} us CPU (medians). "
            "Median (interquartile range) of each round's difference from its bare run:",
            "",
            "| variant | added wall us/step | added CPU us/step | throughput vs bare |",
            "| --- | ---: | ---: | ---: |",
        ]
        for v, x in pr["variants"].items():
            L.append(
                f"| {v} | {quartiles(x['wall'], '{:+.1f}')} | {quartiles(x['cpu'], '{:+.1f}')} "
                f"| {quartiles(x['ratio'], '{:.3f}')} |"
            )
        L += [f"| {v} | - | - | {why} |" for v, why in pr.get("skipped", {}).items()]
        L.append("")
        h = pr["variants"].get(HEADLESS)
        if h is not None:
            targets.append(
                (
                    f"optitui headless: <= 10 us per step ({pr['loop']} step, paired)",
                    f"CPU {med(h['cpu']):+.1f} us, wall {med(h['wall']):+.1f} us, "
                    f"throughput {med(h['ratio']):.3f}",
                    verdict(med(h["cpu"]) <= 10, med(h["wall"]) <= 10, "CPU", "wall"),
                )
            )
    syncs = data.get("syncs")
    if syncs:
        loops = list(data.get("sync_steps", {}))
        L += [
            "## 2. Host-device syncs per 1,000 steps",
            "",
            "Reads of a tensor's value to the host (`item`, `tolist`, `cpu`, `__float__`, "
            "`__bool__`, ...) made by the tool's own code or inside the user's logging call "
            "for it; on CPU each is where an accelerator would stall. The dashboard (attached "
            "or --inline) imports no torch: the same trainer code is all that reads.",
            "",
            "| tool | " + " | ".join(f"{lp} step" for lp in loops) + " | which reads |",
            "| --- | " + " | ".join("---:" for _ in loops) + " | --- |",
        ]
        zero_extra = None
        for v, per in syncs.items():
            if isinstance(per, str):
                L.append(f"| {v} | " + " | ".join("-" for _ in loops) + f" | {per} |")
                continue
            cells, methods = [], Counter()
            for lp in loops:
                r = per.get(lp)
                if isinstance(r, dict):
                    cells.append(f"{r['per_1000']:.1f}")
                    methods.update(r["by_method"])
                else:
                    cells.append(str(r))
            what = ", ".join(f"{k}" for k in sorted(methods)) or "none"
            if v == HEADLESS:
                what += " (one batched read per flush: every 64 steps or 0.5 s)"
                zero_extra = cells
            if v == TRACKIO:
                what += " (in the user's call: trackio.log takes no tensors)"
            L.append(f"| {v} | " + " | ".join(cells) + f" | {what} |")
        L.append("")
        if zero_extra is not None:
            targets.append(
                (
                    "zero extra syncs (optitui)",
                    "batched reads per 1,000 steps: "
                    + ", ".join(f"{c} ({lp})" for c, lp in zip(zero_extra, loops, strict=True)),
                    "none per step; not zero: one blocking read per flush"
                    if all(float(c) < 1000 for c in zero_extra)
                    else "missed",
                )
            )
    frames = data.get("frames")
    if frames:
        rows = frames["rows"]
        L += [
            "## 3. Dashboard frame cost against history length",
            "",
            f"Both plots (loss + lr) over the whole history, {SIZE[0]}x{SIZE[1]}, one frame "
            "every 250 ms as the app draws them (`tui_frames.frame_costs`). CPU is the "
            "drawing thread's CPU time; wall also counts other processes on a busy machine.",
            "",
            "| history | CPU median ms | CPU p90 ms | wall median ms | wall p90 ms "
            "| decimation ms | load |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for n, r in sorted(rows.items()):
            L.append(
                f"| {n:,} | {r['cpu']:.1f} | {r['cpu_p90']:.1f} | {r['wall']:.1f} "
                f"| {r['wall_p90']:.1f} | {r['decimation']:.2f} | {r['load']:.2f} |"
            )
        big, small = max(rows), min(rows)
        ratio = rows[big]["cpu"] / rows[small]["cpu"]
        L.append("")
        targets.append(
            (
                f"frame cost flat in history length ({big:,} vs {small:,}: <= 1.5x, < 25 ms)",
                f"{ratio:.2f}x, {rows[big]['cpu']:.1f} ms CPU",
                "met" if ratio <= 1.5 and rows[big]["cpu"] < 25 else "missed",
            )
        )
    att = data.get("attach")
    if att:
        big = att["steps"]
        walls = [w for w, _ in att["inproc"]]
        cpus = [c for _, c in att["inproc"]]
        L += [
            f"## 4. Attach to first full frame on a {big:,}-step run, and the viewer's memory",
            "",
            "From spawning the process to both plots drawn over the whole history "
            "(interpreter start, imports, reading the store, smoothing and pyramids, first "
            "frame). Memory is the `optitui attach` process's VmRSS half a second after "
            "that frame, and its peak (VmHWM).",
            "",
            "| measure | median | min..max |",
            "| --- | ---: | ---: |",
            stat_row("headless app in a new process, wall s", walls),
            stat_row("the same, CPU s", cpus),
        ]
        tm = att.get("tmux")
        if tm:
            w = [x["wall"] for x in tm]
            rss = [x["rss_mb"] for x in tm]
            hwm = [x["hwm_mb"] for x in tm]
            small_rss = [x["rss_mb"] for x in att["tmux_small"]]
            L += [
                stat_row(f"`optitui attach` in tmux {SIZE[0]}x{SIZE[1]}, wall s", w),
                stat_row(f"viewer RSS holding {big:,} steps, MB", rss, "{:.0f}"),
                stat_row("viewer peak RSS (VmHWM), MB", hwm, "{:.0f}"),
                stat_row(f"viewer RSS holding {att['small']:,} steps, MB", small_rss, "{:.0f}"),
            ]
            attach_wall = med(w)
        else:
            L.append("| `optitui attach` in tmux | - | skipped: tmux not installed |")
            attach_wall = med(walls)
        L.append("")
        targets.append(
            (
                f"attach under 1 s at {big:,} steps",
                f"{attach_wall:.2f} s",
                "met" if attach_wall < 1 else "missed",
            )
        )
    cmds = data.get("commands")
    if cmds:
        L += [
            "## 5. Command latency",
            "",
            "A job (`optitui run --headless`) whose step sleeps; `set lr` sent at random "
            "phases of the step. *applied*: send to the job's acknowledgement (the "
            "outcome's timestamp, taken when the trainer applies it at a step boundary); "
            "*readable*: send until the answer can be read from the store (polled every "
            "1 ms); *send returns*: `client.send` waiting as `optitui send` and the "
            "dashboard do (its poll backs off from 10 ms to 100 ms). Median / max, ms.",
            "",
            "| step time | commands | applied | readable | send returns | target | met |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for label, r in cmds.items():
            target = r["step_s"] + 0.05
            worst = max(r["visible"] + r["returned"])
            ok = max(r["applied"]) <= target and max(r["visible"]) <= target
            L.append(
                f"| {label} | {len(r['applied'])} | {ms(r['applied'])} | {ms(r['visible'])} "
                f"| {ms(r['returned'])} | {target * 1e3:.0f} | "
                + ("met" if ok else "missed")
                + ("" if max(r["returned"]) <= target else " (send returns later: its poll)")
                + " |"
            )
            targets.append(
                (
                    f"command acknowledged within one step + 50 ms ({label} steps)",
                    f"readable max {max(r['visible']) * 1e3:.0f} ms, send returns max "
                    f"{max(r['returned']) * 1e3:.0f} ms (target {target * 1e3:.0f} ms)",
                    ("met" if ok else "missed")
                    + ("" if worst <= target else "; send's poll returns later"),
                )
            )
        L.append("")
    ck = data.get("checkpoint")
    if ck:
        slow = [d / b for d, b in zip(ck["step_during"], ck["step_before"], strict=True)]
        L += [
            f"## 6. Checkpoint save, {ck['params'] / 1e6:.1f}M float32 parameters "
            f"({ck['file_mb']:.0f} MB file)",
            "",
            "optitui's saver copies the state to host memory on the training thread and "
            "writes it (serialise, fsync, rename, manifest) in a background thread. A user's "
            "`torch.save` of the same state on the training thread is shown for comparison. "
            "Seconds, median and min..max over the repeats.",
            "",
            "| measure | median | min..max |",
            "| --- | ---: | ---: |",
            stat_row("optitui: on the training thread", ck["on_thread"], "{:.3f}"),
            stat_row("optitui: total, until on disk (`saver.wait()`)", ck["total"], "{:.3f}"),
            stat_row("`torch.save` on the training thread", ck["plain"], "{:.3f}"),
            stat_row("`torch.save` + fsync on the training thread", ck["plain_fsync"], "{:.3f}"),
            stat_row("tiny-step time while the write runs / before it", slow, "{:.2f}x"),
            "",
        ]
    if targets:
        L += [
            "## Targets",
            "",
            "| target | measured | result |",
            "| --- | --- | --- |",
            *[f"| {a} | {b} | {c} |" for a, b, c in targets],
            "",
        ]
    if "total_s" in env:
        L.append(f"Total time of this run: {env['total_s']:.0f} s.")
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="every row, smallest sizes (CI)")
    ap.add_argument(
        "--out",
        type=Path,
        help="where the markdown goes (default: RESULTS.md; with --quick a temporary file)",
    )
    ap.add_argument(
        "--sections",
        default="overhead,syncs,frames,attach,commands,checkpoint",
        help="comma-separated subset (a partial run does not write RESULTS.md unless --out)",
    )
    ap.add_argument("--rounds", type=int, help="rounds of the overhead runs")
    ap.add_argument(
        "--render",
        type=Path,
        metavar="RAW_JSON",
        help="only write the table again from a run's raw data (the path it printed)",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        Path(args.result).write_text(json.dumps(worker(json.loads(args.worker))))
        return

    if args.render is not None:
        data = json.loads(args.render.read_text())
        if "frames" in data:
            data["frames"]["rows"] = {int(k): v for k, v in data["frames"]["rows"].items()}
        text = report(data)
        print(text)
        (args.out or RESULTS).write_text(text)
        return
    sections = set(args.sections.split(","))
    full_sections = sections == {"overhead", "syncs", "frames", "attach", "commands", "checkpoint"}
    if args.out is not None:
        out_path = args.out
    elif args.quick or not full_sections:
        out_path = Path(tempfile.gettempdir()) / "optitui-compare-quick.md"
    else:
        out_path = RESULTS
    q = args.quick
    cfg = {
        "steps": {"tiny": 300, "heavy": 15} if q else {"tiny": 10_000, "heavy": 300},
        "rounds": {"tiny": args.rounds or 1, "heavy": args.rounds or 1}
        if q
        else {"tiny": args.rounds or 9, "heavy": args.rounds or 5},
        "paired_tiny": (300, 2) if q else (3000, 24),  # steps, rounds
        "paired_empty": (300, 1) if q else (5000, 12),
        "sync_steps": {"tiny": 200, "heavy": 20} if q else {"tiny": 1000, "heavy": 250},
        "sizes": [1_000, 10_000] if q else [1_000, 100_000, 1_000_000],
        "frames": 3 if q else 30,
        "attach_reps": 1 if q else 5,
        "commands": 2 if q else 10,  # of each kind: readable, and send returns
        "step_times": [0.001, 0.1],
        "ckpt": (2, 1024, 1) if q else (6, 2048, 5),  # layers, width, repeats
    }

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    import torch  # for the version only; the measurements run in workers

    skipped = available(VARIANTS)
    data: dict[str, Any] = {
        "env": {
            "command": "python benchmarks/compare.py" + (" --quick" if q else ""),
            "revision": git_revision(),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "tools": {
                d: v
                for d in ("textual", "tensorboard", "trackio", "wandb")
                if (v := version_of(d)) is not None
            },
            "load_start": load1(),
        },
        "skipped": skipped,
    }
    for v, why in skipped.items():
        log(f"{v}: {why}")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="optitui-compare-") as tmp_s:
        tmp = Path(tmp_s)
        if "overhead" in sections:
            data["overhead"] = {}
            for loop in ("tiny", "heavy"):
                log(f"overhead, {loop} loop")
                data["overhead"][loop] = overhead_section(
                    loop, cfg["steps"][loop], cfg["rounds"][loop], skipped, log, one_process=q
                )
        if "overhead" in sections:
            log("paired in one process")
            data["paired"] = [
                paired_section("tiny", *cfg["paired_tiny"], [BARE, HEADLESS], skipped, log),
                paired_section(
                    "empty",
                    *cfg["paired_empty"],
                    [BARE, HEADLESS, TB, TRACKIO, WANDB],
                    skipped,
                    log,
                ),
            ]
        if "syncs" in sections:
            log("syncs")
            data["sync_steps"] = cfg["sync_steps"]
            data["syncs"] = syncs_section(cfg["sync_steps"], skipped, log)
        runs: dict[int, Path] = {}
        if "frames" in sections:
            log("frame cost")
            fr = frames_section(cfg["sizes"], cfg["frames"], tmp, log)
            runs = fr.pop("runs")
            data["frames"] = fr
        if "attach" in sections:
            log("attach")
            if not runs:
                import tui_frames

                runs = {n: tui_frames.write_store(tmp / f"hist{n}", n) for n in cfg["sizes"]}
            data["attach"] = attach_section(runs, cfg["attach_reps"], log)
        if "commands" in sections:
            log("command latency")
            data["commands"] = commands_section(cfg["step_times"], cfg["commands"], tmp, log)
        if "checkpoint" in sections:
            log("checkpoint")
            layers, width, reps = cfg["ckpt"]
            data["checkpoint"] = call_worker(
                {"kind": "checkpoint", "layers": layers, "width": width, "reps": reps}
            )
    data["env"]["load_end"] = load1()
    data["env"]["total_s"] = time.perf_counter() - t_start
    text = report(data)
    print(text)
    out_path.write_text(text)
    raw = Path(tempfile.gettempdir()) / f"optitui-compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw.write_text(json.dumps(data, default=str, indent=1))
    log(f"wrote {out_path} (raw data: {raw})")


if __name__ == "__main__":
    main()
