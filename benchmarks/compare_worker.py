"""Worker side: host-device syncs counted, checkpoint saves timed, and the fresh
interpreter every job of the parent's runs in."""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compare_loops import HEADLESS, REPO, TB, TRACKIO, WANDB, make_loop
from compare_variants import bare_loop, paired_runs, run_variant, summarize_times, tool_hook

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
    if kind == "metrics":
        from compare_metrics import metrics_worker

        return metrics_worker(spec)
    if kind == "checkpoint":
        return checkpoint_bench(spec["layers"], spec["width"], spec["reps"], tmp)
    raise ValueError(kind)


DONE = "optitui-compare-worker-done"


def serve() -> None:
    """The shared worker's loop: a ``[spec, result_path]`` line on stdin is run like a
    fresh worker's job, its result (or error) written to result_path, then DONE printed."""
    for line in sys.stdin:
        spec, result = json.loads(line)
        try:
            out = {"ok": worker(spec)}
        except Exception as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        Path(result).write_text(json.dumps(out))
        print(DONE, flush=True)


class SharedWorker:
    """One interpreter that runs the jobs one after the other, for the smoke run: there
    the interpreter and torch start-ups cost more than the measurements, and its numbers
    are not worth quoting anyway. A job for another checkout (``root``) still gets a fresh
    interpreter of that checkout's."""

    active: SharedWorker | None = None

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="optitui-bench-shared-")
        tmp = self._dir.name
        self._stderr = open(Path(tmp) / "stderr.txt", "w+")  # noqa: SIM115 (closed in close)
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / "compare.py"), "--serve"],
            cwd=REPO,
            env=worker_env(REPO, tmp),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # it exited

    def __enter__(self) -> SharedWorker:
        SharedWorker.active = self
        return self

    def __exit__(self, *exc: object) -> None:
        SharedWorker.active = None
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()
        self._dir.cleanup()

    def call(self, spec: dict[str, Any], timeout: float) -> Any:
        assert self.proc.stdin is not None
        with tempfile.TemporaryDirectory(prefix="optitui-bench-") as tmp:
            result = Path(tmp) / "result.json"
            self.proc.stdin.write(json.dumps([{**spec, "tmp": tmp}, str(result)]) + "\n")
            self.proc.stdin.flush()
            deadline = time.monotonic() + timeout
            while True:
                try:
                    line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    why = f"the shared worker did not answer in {timeout:g} s"
                    raise RuntimeError(why) from None
                if line is None:
                    self._stderr.seek(0)
                    tail = self._stderr.read().strip().splitlines()[-6:]
                    raise RuntimeError(" | ".join(tail) or "the shared worker exited")
                if line == DONE:
                    break
            out = json.loads(result.read_text())
        if "error" in out:
            raise RuntimeError(out["error"])
        return out["ok"]


def worker_env(repo: Path, tmp: str) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TRACKIO_DIR": str(Path(tmp) / "trackio"),
        "WANDB_MODE": "offline",
        "WANDB_DIR": tmp,
        "WANDB_SILENT": "true",
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": str(repo),
    }


def call_worker(spec: dict[str, Any], timeout: float = 900, root: Path | None = None) -> Any:
    """Run ``worker(spec)`` in a fresh interpreter (or the shared one, while one is
    active); its result, or raise with its stderr. ``root``: another checkout (the code
    before a change), whose own harness and optitui run the worker instead of this one's."""
    if root is None and SharedWorker.active is not None:
        return SharedWorker.active.call(spec, timeout)
    repo = REPO if root is None else root
    with tempfile.TemporaryDirectory(prefix="optitui-bench-") as tmp:
        spec = {**spec, "tmp": tmp}
        result = Path(tmp) / "result.json"
        env = worker_env(repo, tmp)
        proc = subprocess.run(
            [
                sys.executable,
                str(repo / "benchmarks" / "compare.py"),
                "--worker",
                json.dumps(spec),
                "--result",
                str(result),
            ],
            cwd=repo,
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
