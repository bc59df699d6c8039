"""Parent side: each section of the comparison, run through fresh workers."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compare_loops import (
    ATTACHED,
    BARE,
    BEFORE_HEADLESS,
    HEADLESS,
    INLINE,
    REPO,
    TB,
    TRACKIO,
    VARIANTS,
    WANDB,
    orders,
    write_script,
)
from compare_machine import (
    Tmux,
    load1,
    optitui_command,
    proc_cpu_seconds,
    proc_memory_kib,
    shows_all,
)
from compare_worker import call_worker


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
            "viewer_cpu": med([x["viewer_cpu_pct"] for x, _ in pairs]) if v == ATTACHED else None,
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
    before: Path | None = None,
) -> dict[str, Any]:
    """With ``before`` (another checkout), the rounds go in pairs to a worker of this code
    and one of that code, alternately, and that code's optitui gets rows of its own
    (``optitui headless (before)``), each round against its own bare run."""
    left_out = {v: skipped[v] for v in variants if v in skipped}
    variants = [v for v in variants if v not in skipped]
    spec = {"kind": "paired", "loop": loop, "steps": steps, "variants": variants}
    if before is None:
        got = call_worker({**spec, "rounds": rounds})
        old: list[dict[str, Any]] = []
    else:
        got, old = [], []
        old_spec = {**spec, "variants": [BARE, HEADLESS]}
        for chunk in range(0, rounds, 2):
            k = min(2, rounds - chunk)
            got += call_worker({**spec, "rounds": k})
            old += call_worker({**old_spec, "rounds": k}, root=before)
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
            # the training thread's own CPU (an older harness's results lack it)
            "thread": [
                r[v]["thread_cpu_us"] - r[BARE]["thread_cpu_us"]
                for r in got
                if "thread_cpu_us" in r[v]
            ],
        }
        out["variants"][v] = x
        log(
            f"  {loop}, {v}: wall {med(x['wall']):+.1f} us, CPU {med(x['cpu']):+.1f} us, "
            f"ratio {med(x['ratio']):.3f}"
        )
    if old:
        out["variants"][BEFORE_HEADLESS] = x = {
            "wall": [r[HEADLESS]["mean_us"] - r[BARE]["mean_us"] for r in old],
            "cpu": [r[HEADLESS]["cpu_us"] - r[BARE]["cpu_us"] for r in old],
            "ratio": [r[BARE]["mean_us"] / r[HEADLESS]["mean_us"] for r in old],
        }
        log(f"  {loop}, {BEFORE_HEADLESS}: wall {med(x['wall']):+.1f} us")
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
