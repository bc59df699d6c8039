"""The metrics screen's frame: nine charts of a run's own metrics, at any history length.

    python benchmarks/tui_metrics_frames.py            # 1k and 1M steps
    python benchmarks/tui_metrics_frames.py --quick    # 1k and 10k (a smoke run)

(``benchmarks/tui_frames.py`` runs it too, after its own sections.) A run with N steps
and nine per-step metrics (one of them measured every 16th step only, as the optimizer's
health is) is opened in the dashboard headless at 160x48 and **m** pressed; once every
metric's pyramid is built, the grid of charts is drawn back to back with nothing reused
(each chart decimated, y range chosen, drawn in braille) and each frame's CPU time taken.
Target: under 40 ms at 1M steps x 9 charts, 160x48.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from optitui.store.layout import create_run_dir
from optitui.store.records import Event, MetricBatch, StatusUpdate
from optitui.store.writer import StoreWriter

CHUNK = 64
SIZE = (160, 48)
METRICS = 9


def write_metrics_store(run_dir: Path, steps: int) -> Path:
    """A run of ``steps`` steps with a loss, an lr and nine metrics of its own."""
    paths = create_run_dir(run_dir.parent, run_dir.name, run_dir)
    w = StoreWriter(paths, {"groups": ["body"], "device": "cpu", "max_steps": steps})
    batch: list[MetricBatch] = []
    for s0 in range(1, steps + 1, CHUNK):
        idx = range(s0, min(s0 + CHUNK, steps + 1))
        cols: dict[str, list[float]] = {
            "step": [float(s) for s in idx],
            "time": [1.7e9 + s * 0.01 for s in idx],
            "loss": [2.0 / math.sqrt(s) for s in idx],
            "lr/0": [0.01 for _ in idx],
        }
        for k in range(METRICS - 1):
            cols[f"user:metric{k}"] = [
                1.0 - 1.0 / math.sqrt(s + k) + 0.02 * math.sin(s * (k + 1)) for s in idx
            ]
        cols["update_ratio/0"] = [1e-3 / math.sqrt(s) if s % 16 == 0 else math.nan for s in idx]
        batch.append(MetricBatch(cols))
        if len(batch) >= 512:
            w.write(list(batch))
            batch = []
    w.write(
        [
            *batch,
            Event(steps // 3, "command", "scale-lr", {"kind": "scale-lr", "args": {"factor": 2}}),
            Event(2 * steps // 3, "checkpoint", "saved", {"marker": "save"}),
            StatusUpdate("running", steps, 0, 100.0, 6400.0),
        ]
    )
    w.close()
    return paths.root


async def grid_frames(run: Path, frames: int) -> tuple[list[float], int]:
    """CPU seconds of each frame of the metrics screen's grid, and the charts it drew."""
    from optitui.tui.app import build_app
    from optitui.tui.widgets.chart_grid import ChartGrid

    app = build_app(run)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.dashboard
        while not screen.updates:
            await pilot.pause(0.05)
        await pilot.press("m")
        while True:
            await pilot.pause(0.1)
            grid = app.screen.query(ChartGrid)
            if not grid:
                continue
            g = grid.first()
            ready = g.view.metrics.series and all(s.values.levels for s in g.view.metrics.series)
            if ready and g.drawn:
                break
        costs = []
        for i in range(frames + 3):
            g._cache.clear()  # nothing reused: every chart decimated and drawn again
            c0 = time.thread_time()
            g.render()
            if i >= 3:
                costs.append(time.thread_time() - c0)
        return costs, len(g.drawn)


def section(sizes: list[int], frames: int) -> None:
    print(
        f"\nmetrics screen, {METRICS} charts, {SIZE[0]}x{SIZE[1]}, whole history, "
        "each frame drawn afresh (CPU ms; target < 40 at 1M):"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            t0 = time.perf_counter()
            run = write_metrics_store(Path(tmp) / f"metrics{n}", n)
            took = time.perf_counter() - t0
            print(f"wrote a {n:,}-step store with metrics in {took:.2f} s", file=sys.stderr)
            costs, drawn = asyncio.run(grid_frames(run, frames))
            med, worst = statistics.median(costs) * 1e3, sorted(costs)[-1] * 1e3
            p90 = sorted(costs)[int(0.9 * (len(costs) - 1))] * 1e3
            print(
                f"{n:>10,} steps: {drawn} charts, median {med:.1f}, p90 {p90:.1f}, max {worst:.1f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1k and 10k steps instead of 1M")
    ap.add_argument("--frames", type=int, default=30)
    args = ap.parse_args()
    section([1_000, 10_000] if args.quick else [1_000, 1_000_000], args.frames)


if __name__ == "__main__":
    main()
