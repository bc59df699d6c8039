"""What any Textual dashboard pays before its first frame, beside what optitui's attach pays:
the floor under "attach to a first full frame".

    python benchmarks/attach_floor.py            # 5 rounds
    python benchmarks/attach_floor.py --rounds 1

Each row is a fresh process, its wall time from spawn to done and the CPU it used (user +
system, all threads), median of the rounds, rows interleaved so a busy machine weighs on
each alike:

- ``python -c pass``: the interpreter and its site packages;
- ``import textual.app``; then the Textual widgets and textual-plotext the dashboard is
  made of (``Static`` alone brings ``rich.pretty``);
- ``import optitui.tui.app``: the dashboard's whole import;
- an empty Textual app (one ``Static``) until its first frame, headless at 160x48;
- the dashboard attached to a run of N steps (``--steps``, 1M by default) until both plots
  drew its whole history, headless at 160x48 (``tui_frames.attach_in_process``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compare_machine import load1
from tui_frames import attach_in_process, write_store

EMPTY_APP = """
import asyncio, time
from textual.app import App
from textual.widgets import Static
class Empty(App[None]):
    def compose(self):
        yield Static("empty")
async def main():
    app = Empty()
    async with app.run_test(size=(160, 48)) as pilot:
        while app.screen.query_one(Static).region.area == 0:
            await pilot.pause(0.005)
        await pilot.pause()
asyncio.run(main())
"""

WIDGETS = (
    "import textual.app; from textual.containers import Horizontal, Vertical; "
    "from textual.widgets import DataTable, Footer, Input, RichLog, Static; "
    "import textual_plotext"
)

ROWS: tuple[tuple[str, str], ...] = (
    ("python -c pass", "pass"),
    ("import textual.app", "import textual.app"),
    ("+ the dashboard's widgets, textual-plotext", WIDGETS),
    ("import optitui.tui.app", "import optitui.tui.app"),
    ("empty Textual app, first frame (headless)", EMPTY_APP),
)


def run_child(code: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) for ``python -c code``."""
    t0 = time.perf_counter()
    before = os.times()
    subprocess.run([sys.executable, "-c", code], check=True)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return time.perf_counter() - t0, cpu


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1_000_000)
    args = ap.parse_args()
    print(f"load average {load1():.2f}; python {sys.version.split()[0]}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        run = write_store(Path(tmp) / "run", args.steps)
        got: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in ROWS}
        attach_label = f"optitui dashboard, {args.steps:,} steps, first full frame (headless)"
        got[attach_label] = []
        for _ in range(args.rounds):
            for label, code in ROWS:
                got[label].append(run_child(code))
            got[attach_label].append(attach_in_process(run, args.steps))
    for label, vals in got.items():
        wall = statistics.median(w for w, _ in vals)
        cpu = statistics.median(c for _, c in vals)
        print(f"{label:<64} wall {wall:5.2f} s   CPU {cpu:5.2f} s", flush=True)
    print(f"load average {load1():.2f}")


if __name__ == "__main__":
    main()
