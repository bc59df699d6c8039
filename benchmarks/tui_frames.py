"""How much a dashboard frame costs as history grows, and how fast `optitui attach` draws.

    python benchmarks/tui_frames.py            # 1k, 100k and 1M steps; attach on 1M
    python benchmarks/tui_frames.py --quick    # smaller sizes, for a smoke run

Frame cost: the dashboard (headless, 160x48) is given a run store of N steps;
both plots are then redrawn over the whole history ("all" window, the worst
case for decimation) once every 250 ms, as the app does, and each redraw is
timed: decimation of every series to the plot width, the plotext figure, and
its conversion to rich Text. Both the thread's CPU time and the wall time are
shown: on a shared or busy machine the wall time also counts other processes.
Then the CPU time of frames drawn back to back (no idle gap): over the whole history,
zoomed in on an eighth of it (``[`` three times, then ``,``: a window panned back), on
the other y scale (**l**: log-y where the axis was linear, linear where it was log),
and with no frame reused (as when a live run's tick labels change, plotext builds
the axes again). Targets: a 1M-step frame at most 1.5x a 1k-step frame, and at most
12 ms at 160x48 at any length, zoom and scale.

``--versus TREE``: only the frame costs, for the optitui in checkout TREE and for
this one, each in a process of its own on the same stores, side by side (with the
``--overlays`` run too: 4 runs of the biggest size).

Attach to first frame: a fresh Python process runs the dashboard on a
1M-step store and reports when both plots have drawn all of it; the time
counts from just before the process is spawned (interpreter start, imports,
reading the store, deriving the smoothed loss and pyramids, first frame).
With tmux installed, the same is measured in a real terminal with
`optitui attach`, watching the screen until the plots show the full history.
Target: under 1 s.

Overlays (``--overlays K``, 3 by default: `optitui attach` on 4 runs): the 1M-step run
steered with K copies of it drawn over its plots (K more smoothed losses and 2K lrs per
frame). The same frame costs at 160x48 (target: under 40 ms), then attach to the first
frame with every run's whole history drawn, headless in a new process and in tmux as
`optitui attach RUN OTHER...` (target: under 2 s). ``--overlays-only`` skips the
sections before it.

The metrics screen (m) last: nine charts of a run's own metrics at 160x48, each frame
drawn afresh (``benchmarks/tui_metrics_frames.py``; target: under 40 ms at 1M steps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from optitui.store.layout import create_run_dir
from optitui.store.records import Event, GroupSnapshot, MetricBatch, StatusUpdate, ValRecord
from optitui.store.writer import StoreWriter
from optitui.tui.fmt import count

CHUNK = 64  # steps per metric row, as the trainer flushes them
SIZE = (160, 48)
GROUP = {
    "params": 1000,
    "frozen": False,
    "lr_multiplier": 1.0,
    "fields": {"lr": {"name": "lr", "kind": "float", "low": 0.0}},
}


def write_store(run_dir: Path, steps: int) -> Path:
    """A run with ``steps`` steps: noisy decaying loss, cosine and step-decay lrs."""
    paths = create_run_dir(run_dir.parent, run_dir.name, run_dir)
    w = StoreWriter(paths, {"groups": ["body", "head"], "device": "cpu", "max_steps": steps})
    groups = [
        {**GROUP, "index": 0, "name": "body", "values": {"lr": 0.1}},
        {**GROUP, "index": 1, "name": "head", "values": {"lr": 0.01}},
    ]
    w.write([GroupSnapshot(0, groups)])
    batch: list[MetricBatch | ValRecord | Event] = []
    for s0 in range(1, steps + 1, CHUNK):
        idx = range(s0, min(s0 + CHUNK, steps + 1))
        batch.append(
            MetricBatch(
                {
                    "step": [float(s) for s in idx],
                    "epoch": [float(s // 5000) for s in idx],
                    "time": [1.7e9 + s * 0.01 for s in idx],
                    "loss": [2.0 / math.sqrt(s) + 0.1 * abs(math.sin(s * 1.3)) for s in idx],
                    "lr/0": [0.05 * (1 + math.cos(math.pi * s / steps)) + 1e-4 for s in idx],
                    "lr/1": [0.01 * 0.5 ** (s * 4 // steps) for s in idx],
                }
            )
        )
        if s0 % 1000 < CHUNK:
            batch.append(ValRecord(s0, s0 // 5000, 2.0 / math.sqrt(s0) + 0.05))
        if len(batch) >= 512:
            w.write(batch)  # type: ignore[arg-type]
            batch = []
    batch += [
        Event(steps // 3, "command", "scale-lr", {"kind": "scale-lr", "args": {"factor": 2}}),
        Event(2 * steps // 3, "checkpoint", "saved", {"marker": "save"}),
    ]
    w.write([*batch, StatusUpdate("running", steps, steps // 5000, 100.0, 6400.0)])  # type: ignore[list-item]
    w.close()
    return paths.root


@dataclass
class Frames:
    cpu: list[float] = field(default_factory=list)  # this thread's CPU time per frame
    wall: list[float] = field(default_factory=list)
    decimation: list[float] = field(default_factory=list)  # wall, choosing the points
    back_to_back: list[float] = field(default_factory=list)  # CPU, no pause between frames
    zoomed: list[float] = field(default_factory=list)  # CPU, back to back, an eighth in view
    flipped: list[float] = field(default_factory=list)  # CPU, back to back, the other y scale
    rebuilt: list[float] = field(default_factory=list)  # CPU, back to back, no frame reused


async def frame_costs(run: Path, steps: int, frames: int, overlays: Sequence[Path] = ()) -> Frames:
    """Frames drawn as the app draws them: one every 250 ms, the screen rendering between
    (``overlays``: runs of ``steps`` steps each, drawn over the steered one)."""
    from optitui.tui.app import build_app
    from optitui.tui.overlay_feed import overlay_run

    app = build_app(run, overlays=[overlay_run(p) for p in overlays])
    out = Frames()
    lengths = (steps,) * len(overlays)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.dashboard
        while not (
            screen.overlay_lengths() == lengths
            and all(p.shows(steps, lengths) for p in screen.plots)
        ):
            await pilot.pause(0.05)
        out.back_to_back = back_to_back(screen.plots, frames)
        for i in range(frames + 3):
            await pilot.pause(0.25)
            c0, w0 = time.thread_time(), time.perf_counter()
            for plot in screen.plots:
                plot.redraw(force=True)
            if i >= 3:  # warm-up frames are not counted
                out.cpu.append(time.thread_time() - c0)
                out.wall.append(time.perf_counter() - w0)
                out.decimation.append(sum(p.decimate_seconds for p in screen.plots))
        assert all(p.shows(steps) for p in screen.plots)
        for _ in range(3):  # [ three times, then , : an eighth of the run, panned back
            screen.action_zoom(True)
        screen.action_pan(True)
        out.zoomed = back_to_back(screen.plots, frames)
        screen.action_all_steps()
        screen.action_toggle_log()  # l: log-y where the axis was linear, and back
        out.flipped = back_to_back(screen.plots, frames)
        screen.action_toggle_log()
        out.rebuilt = back_to_back(screen.plots, frames, afresh=True)
    return out


def back_to_back(plots: Sequence[Any], frames: int, afresh: bool = False) -> list[float]:
    """CPU seconds of each of ``frames`` frames drawn one after the other (after 3 not
    counted); ``afresh``: no frame reused (as when the axes change, plotext builds it)."""
    out = []
    for i in range(frames + 3):
        c0 = time.thread_time()
        for plot in plots:
            forget = getattr(getattr(plot, "frame_cache", None), "forget", None)
            if afresh and forget is not None:
                forget()
            plot.redraw(force=True)
        if i >= 3:
            out.append(time.thread_time() - c0)
    return out


ATTACH_CHILD = """
import asyncio, sys, time
from pathlib import Path
from optitui.tui.app import build_app
from optitui.tui.overlay_feed import overlay_run
run, steps, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
others = sys.argv[5:]
async def main():
    app = build_app(run, overlays=[overlay_run(Path(o), prefetch=True) for o in others])
    lengths = (steps,) * len(others)
    async with app.run_test(size=(w, h)) as pilot:
        screen = app.dashboard
        while not (screen.overlay_lengths() == lengths and all(
                p.shows(steps, lengths) and (p.frames or not p.size.area)
                for p in screen.plots)):
            await pilot.pause(0.005)
        print(time.time(), time.process_time())
asyncio.run(main())
"""


def attach_in_process(run: Path, steps: int, overlays: Sequence[Path] = ()) -> tuple[float, float]:
    """(wall seconds from spawn to the first full frame, CPU seconds the process used)."""
    t0 = time.time()
    size = [str(SIZE[0]), str(SIZE[1])]
    out = subprocess.run(
        [sys.executable, "-c", ATTACH_CHILD, str(run), str(steps), *size, *map(str, overlays)],
        capture_output=True,
        text=True,
        check=True,
    )
    done, cpu = out.stdout.split()[-2:]
    return float(done) - t0, float(cpu)


def attach_in_tmux(run: Path | str, steps: int, overlays: Sequence[Path] = ()) -> float | None:
    """Wall time from `optitui attach RUN` in a 160x48 tmux pane to the full history on screen
    (``run`` may be ``HOST:RUN``: the environment reaches the pane); with ``overlays``,
    `optitui attach RUN OTHER...` until both plots' legends name every other run."""
    if shutil.which("tmux") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        sock = str(Path(tmp) / "tmux.sock")

        def tmux(*args: str) -> str:
            res = subprocess.run(
                ["tmux", "-f", "/dev/null", "-S", sock, *args],
                capture_output=True,
                text=True,
                check=False,
            )
            return res.stdout

        others = " ".join(str(o) for o in overlays)
        cmd = f"exec env -u COLUMNS -u LINES {sys.executable} -m optitui attach {run} {others}"
        want = f"step {steps:,}"
        names = overlay_names(Path(str(run)).name, overlays)
        t0 = time.perf_counter()
        tmux("new-session", "-d", "-s", "b", "-x", str(SIZE[0]), "-y", str(SIZE[1]), cmd)
        try:
            deadline = t0 + 30
            while time.perf_counter() < deadline:
                screen = tmux("capture-pane", "-p", "-t", "b")
                # the status bar has the last step; at 1M the x axis of both plots ends at
                # "1M" (other sizes' tick labels are not predictable, so only the status bar)
                axes = steps != 1_000_000 or screen.count(f" {count(steps)}") >= 2
                named = all(f"━ {n}" in screen for n in names)
                if want in screen and axes and named:
                    return time.perf_counter() - t0
                time.sleep(0.02)  # each look spawns a tmux client: not too often
            return math.nan
        finally:
            tmux("kill-server")


def overlay_names(run: str, overlays: Sequence[Path]) -> list[str]:
    """The names the legends give the overlaid runs."""
    from optitui.tui.overlay import short_names

    return short_names([run, *(p.name for p in overlays)])[1:] if overlays else []


def overlay_section(big: Path, steps: int, k: int, frames: int) -> None:
    """Frame cost and attach to first frame with ``k`` copies of ``big`` overlaid."""
    others = []
    for i in range(k):
        copy = big.parent / f"copy{i + 1}"
        if not copy.exists():
            shutil.copytree(big, copy)
        others.append(copy)
    f = asyncio.run(frame_costs(big, steps, frames, others))
    print(
        f"\n{k + 1} runs of {steps:,} steps ({k} overlaid), {SIZE[0]}x{SIZE[1]}, "
        "both plots, whole history (ms; target < 40):"
    )
    print(f"  {frames_text(f)}")
    print(f"attach to first full frame of all {k + 1} runs (target < 2 s):")
    inproc = [attach_in_process(big, steps, others) for _ in range(5)]
    print(f"  new process, headless app, wall:  {runs_text([w for w, _ in inproc])}")
    print(f"  the same, CPU time it used:        {runs_text([c for _, c in inproc])}")
    term = [attach_in_tmux(big, steps, others) for _ in range(5)]
    if term[0] is None:
        print("  optitui attach in tmux, wall:      (tmux not installed)")
    else:
        print(f"  optitui attach in tmux, wall:      {runs_text([t for t in term if t])}")


def frames_text(f: Frames) -> str:
    return (
        f"CPU median {statistics.median(f.cpu) * 1e3:.1f}, p90 {p90(f.cpu):.1f}; "
        f"wall median {statistics.median(f.wall) * 1e3:.1f}, p90 {p90(f.wall):.1f}; "
        f"back to back {statistics.median(f.back_to_back) * 1e3:.1f}; "
        f"zoomed {statistics.median(f.zoomed) * 1e3:.1f}; "
        f"other y scale {statistics.median(f.flipped) * 1e3:.1f}; "
        f"frame built afresh {statistics.median(f.rebuilt) * 1e3:.1f}"
    )


def runs_text(times: list[float]) -> str:
    each = ", ".join(f"{t:.2f}" for t in times)
    return f"{statistics.median(times):.2f} s  (runs: {each})"


def p90(costs: list[float]) -> float:
    return sorted(costs)[int(0.9 * (len(costs) - 1))] * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="10k max instead of 1M")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--size", default="160x48", help="terminal size WxH for the frame costs")
    ap.add_argument(
        "--overlays", default="3", help="runs overlaid on the biggest one, comma-separated (3)"
    )
    ap.add_argument("--overlays-only", action="store_true", help="only the overlays section")
    ap.add_argument(
        "--versus",
        metavar="TREE",
        help="only frame costs, side by side with the optitui in another checkout (before)",
    )
    ap.add_argument("--frames-json", help=argparse.SUPPRESS)  # a child's frame costs
    args = ap.parse_args()
    global SIZE
    w, _, h = args.size.partition("x")
    SIZE = (int(w), int(h))
    if args.frames_json:
        job = json.loads(args.frames_json)
        f = asyncio.run(
            frame_costs(
                Path(job["run"]), job["steps"], job["frames"], list(map(Path, job["others"]))
            )
        )
        print(json.dumps(asdict(f)))
        return
    sizes = [1_000, 10_000] if args.quick else [1_000, 100_000, 1_000_000]
    if args.overlays_only:
        sizes = sizes[-1:]
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for n in sizes:
            t0 = time.perf_counter()
            runs[n] = write_store(Path(tmp) / f"run{n}", n)
            print(f"wrote a {n:,}-step store in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
        if args.versus:
            k = int(args.overlays.split(",")[0]) if args.overlays.strip() else 0
            versus(Path(args.versus), runs, sizes, args.frames, k)
            return
        if not args.overlays_only:
            sections(runs, sizes, args.frames)
        overlays = [int(k) for k in args.overlays.split(",") if k.strip()]
        if overlays:  # the same run alone first, side by side with the overlaid frames
            big = sizes[-1]
            alone = asyncio.run(frame_costs(runs[big], big, args.frames))
            print(f"\n{big:,} steps alone, {SIZE[0]}x{SIZE[1]}, as below (ms):")
            print(f"  {frames_text(alone)}")
        for k in overlays:
            overlay_section(runs[sizes[-1]], sizes[-1], k, args.frames)
    if not args.overlays_only:  # the metrics screen: nine charts of the run's own metrics
        from tui_metrics_frames import section as metrics_section

        metrics_section([sizes[0], sizes[-1]], args.frames)


def frames_in(
    tree: Path, run: Path, steps: int, frames: int, others: Sequence[Path] = ()
) -> Frames:
    """:func:`frame_costs` in a new process that imports optitui from ``tree``."""
    job = {"run": str(run), "steps": steps, "frames": frames, "others": list(map(str, others))}
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--size",
            f"{SIZE[0]}x{SIZE[1]}",
            "--frames-json",
            json.dumps(job),
        ],
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    )
    return Frames(**json.loads(out.stdout.splitlines()[-1]))


def versus(before: Path, runs: dict[int, Path], sizes: list[int], frames: int, k: int) -> None:
    """Frame costs of the optitui in ``before`` and of this one, measured one after the
    other on the same stores, each in a process of its own."""
    here = Path(__file__).resolve().parents[1]
    measures = (
        ("whole history, one every 250 ms", "cpu"),
        ("whole history, back to back", "back_to_back"),
        ("zoomed to an eighth, panned", "zoomed"),
        ("the other y scale (l)", "flipped"),
        ("frame built afresh (axes changed)", "rebuilt"),
    )
    print(
        f"\nframe cost, both plots, {SIZE[0]}x{SIZE[1]}, CPU ms (median of {frames}): "
        f"before = {before}, after = {here}"
    )
    print(f"{'history':>10}  {'frame':<36}  {'before':>7}  {'after':>7}  {'after/before':>12}")
    jobs = [(f"{n:,}", runs[n], n, []) for n in sizes]
    if k:
        big = sizes[-1]
        others = []
        for i in range(k):
            copy = runs[big].parent / f"copy{i + 1}"
            if not copy.exists():
                shutil.copytree(runs[big], copy)
            others.append(copy)
        jobs.append((f"{k + 1}x{count(big)}", runs[big], big, others))
    for label, run, n, others in jobs:
        old = frames_in(before, run, n, frames, others)
        new = frames_in(here, run, n, frames, others)
        for name, attr in measures:
            b = statistics.median(getattr(old, attr)) * 1e3
            a = statistics.median(getattr(new, attr)) * 1e3
            print(f"{label:>10}  {name:<36}  {b:>7.1f}  {a:>7.1f}  {a / b:>11.2f}x")


def sections(runs: dict[int, Path], sizes: list[int], frames: int) -> None:
    """Frame cost against history length, then attach to first frame on the biggest run."""
    print(
        f"\nframe cost of both plots (loss + lr), whole history, {SIZE[0]}x{SIZE[1]}, "
        "one frame every 250 ms (ms):"
    )
    print(
        f"{'history':>10}  {'CPU median':>10}  {'CPU p90':>7}  {'wall median':>11}"
        f"  {'wall p90':>8}  {'decimation':>10}  {'back-to-back CPU':>16}"
        f"  {'zoomed, back to back':>20}"
    )
    cpu: dict[int, float] = {}
    for n in sizes:
        f = asyncio.run(frame_costs(runs[n], n, frames))
        cpu[n] = statistics.median(f.cpu) * 1e3
        print(
            f"{n:>10,}  {cpu[n]:>10.1f}  {p90(f.cpu):>7.1f}  "
            f"{statistics.median(f.wall) * 1e3:>11.1f}  {p90(f.wall):>8.1f}"
            f"  {statistics.median(f.decimation) * 1e3:>10.2f}"
            f"  {statistics.median(f.back_to_back) * 1e3:>16.1f}"
            f"  {statistics.median(f.zoomed) * 1e3:>20.1f}"
        )
    big, small = sizes[-1], sizes[0]
    print(
        f"CPU: {big:,} / {small:,} = {cpu[big] / cpu[small]:.2f}x (target <= 1.5x); "
        f"{big:,}: {cpu[big]:.1f} ms (target < 25 ms)"
    )
    print(f"\nattach to first full frame on a {big:,}-step store (target < 1 s):")
    inproc = [attach_in_process(runs[big], big) for _ in range(5)]
    print(f"  new process, headless app, wall:  {runs_text([w for w, _ in inproc])}")
    print(f"  the same, CPU time it used:        {runs_text([c for _, c in inproc])}")
    term = [attach_in_tmux(runs[big], big) for _ in range(5)]
    if term[0] is None:
        print("  optitui attach in tmux, wall:      (tmux not installed)")
    else:
        print(f"  optitui attach in tmux, wall:      {runs_text([t for t in term if t])}")


if __name__ == "__main__":
    main()
