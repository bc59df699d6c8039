"""Attach over ssh: the first full frame of a 1M-step run against a local attach, and the
bytes a viewer receives while following a run at 1,000 steps/s.

    python benchmarks/remote_attach.py           # 1M steps, 5 rounds, 20 s of following
    python benchmarks/remote_attach.py --quick   # 10k steps, 1 round, 3 s: a smoke run

ssh is real: a private sshd on 127.0.0.1 (tests/sshd.py: a throwaway key, its own
config on a free port), so the numbers include the handshake, encryption both
ways, the remote interpreter's start and `optitui serve-stdio` reading the store,
but no network latency or bandwidth limit.

First full frame: from just before the process is spawned to both plots having
drawn the whole history, in a headless app of 160x48, as tui_frames.py measures
the local attach; the remote one does what `optitui attach HOST:RUN` does (ssh
connects and the server streams while Textual loads). Rounds alternate local
and remote. With tmux installed, the real commands are timed too in a 160x48
pane, `optitui attach RUN` and `optitui attach optitui-test:RUN`, until the
screen shows the whole history (as tui_frames.py does). Target: remote within
1.5x of local.

Following: a writer thread records 1,000 steps/s the way the trainer does (a
64-step row of step, epoch, time, loss, lr/0, lr/1 about 16 times a second,
status with each flush; the loss is noisy, so it barely deflates); a client
follows it over ssh, and what it receives after catching up is counted:
protocol bytes (JSON lines) and, from /proc/PID/io, what the server side's
sshd wrote (encrypted, framed: what crosses the network).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import sshd as test_sshd  # noqa: E402
from tui_frames import SIZE, attach_in_process, attach_in_tmux, write_store  # noqa: E402

from optitui.store.layout import create_run_dir  # noqa: E402
from optitui.store.records import GroupSnapshot, MetricBatch, StatusUpdate  # noqa: E402
from optitui.store.writer import Recorder  # noqa: E402

REMOTE_CHILD = """
import asyncio, sys, time
from optitui.remote.client import RemoteRun
from optitui.remote.target import parse
target, steps, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
run = RemoteRun(parse(target))
run.start()  # as `optitui attach HOST:RUN`: ssh connects while Textual loads
from optitui.tui.app import build_app
from optitui.tui.remote_feed import RemoteFeed
run.wait_ready(60)
feed = RemoteFeed(run)
feed.prefetch()
async def main():
    app = build_app(None, run=run, feed=feed)
    async with app.run_test(size=(w, h)) as pilot:
        while not all(p.shows(steps) and (p.frames or not p.size.area)
                      for p in app.dashboard.plots):
            await pilot.pause(0.005)
        print(time.time(), time.process_time(), run.received_bytes)
asyncio.run(main())
run.close()
"""


def attach_remote(target: str, steps: int) -> tuple[float, float, int]:
    """(wall seconds from spawn to the first full frame, CPU seconds of the viewer, bytes)."""
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, "-c", REMOTE_CHILD, target, str(steps), str(SIZE[0]), str(SIZE[1])],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    done, cpu, received = out.stdout.split()[-3:]
    return float(done) - t0, float(cpu), int(received)


def median_text(values: list[float]) -> str:
    each = ", ".join(f"{v:.2f}" for v in values)
    return f"{statistics.median(values):.2f} s  (runs: {each})"


# -- following a live run ------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _written(pids: list[int]) -> int:
    """Bytes the sshd processes among ``pids`` wrote (to the socket, mostly)."""
    total = 0
    for pid in pids:
        try:
            if not (Path("/proc") / str(pid) / "comm").read_text().startswith("sshd"):
                continue  # the server itself, the remote shell
            io = (Path("/proc") / str(pid) / "io").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in io.splitlines() if line.startswith("wchar"))
    return total


def follow_rate(server: test_sshd.Sshd, tmp: Path, seconds: float, rate: int = 1000) -> None:
    from optitui.remote.client import RemoteRun
    from optitui.remote.target import Target
    from optitui.store.columns import MetricColumns

    paths = create_run_dir(tmp, "follow", tmp / "follow")
    rec = Recorder(paths, {"host": os.uname().nodename, "pid": os.getpid()})
    rec.start()
    groups = [{"index": i, "name": n, "values": {"lr": 0.1}} for i, n in enumerate("ab")]
    rec.put(GroupSnapshot(0, groups))
    stop = threading.Event()
    rng = random.Random(0)

    def job() -> None:
        step, t0 = 0, time.perf_counter()
        while not stop.is_set():
            n = 64
            steps = range(step + 1, step + n + 1)
            now = time.time()
            rec.put(
                MetricBatch(
                    {
                        "step": [float(s) for s in steps],
                        "epoch": [float(s // 5000) for s in steps],
                        "time": [now - (step + n - s) / rate for s in steps],
                        "loss": [2.0 / math.sqrt(s) + 0.1 * rng.random() for s in steps],
                        "lr/0": [0.05 * (1 + math.cos(s / 1e5)) for s in steps],
                        "lr/1": [0.01] * n,
                    }
                )
            )
            step += n
            rec.put(StatusUpdate("running", step, step // 5000, float(rate), 64.0 * rate))
            delay = t0 + step / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    writer = threading.Thread(target=job, daemon=True)
    writer.start()
    time.sleep(1.0)
    run = RemoteRun(Target(test_sshd.HOST, str(paths.root)))
    run.start()
    run.wait_ready(60)
    run.mirror.synced.wait(60)
    cols = MetricColumns()
    time.sleep(1.0)  # past the catch-up
    run.read_metrics(cols)
    sshd_pids = _descendants(server.proc.pid)
    got0, wire0, steps0, t0 = run.received_bytes, _written(sshd_pids), cols.length, time.time()
    time.sleep(seconds)
    run.read_metrics(cols)
    got1, wire1, steps1, t1 = run.received_bytes, _written(sshd_pids), cols.length, time.time()
    stop.set()
    writer.join()
    run.close()
    rec.close()
    span = t1 - t0
    steps = steps1 - steps0
    print(f"\nfollowing a run at {rate:,} steps/s over ssh for {span:.1f} s ({steps:,} steps):")
    print(f"  steps/s received:                {steps / span:,.0f}")
    print(
        f"  protocol bytes/s:                {(got1 - got0) / span:,.0f}"
        f"  ({(got1 - got0) / max(steps, 1):.1f} bytes per step; its 6 float64 columns"
        f" are 48 bytes, 64 in base64 unpacked)"
    )
    print(f"  sshd's writes (wire), bytes/s:   {(wire1 - wire0) / span:,.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="10k steps, one round, 3 s following")
    args = ap.parse_args()
    steps = 10_000 if args.quick else 1_000_000
    rounds = 1 if args.quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        server = test_sshd.start(Path(tmp) / "sshd")
        if isinstance(server, str):
            print(f"skipped: no sshd to measure against: {server}")
            return
        try:
            os.environ.update(server.env())
            t0 = time.perf_counter()
            run = write_store(Path(tmp) / "run", steps)
            print(f"wrote a {steps:,}-step store in {time.perf_counter() - t0:.2f} s")
            target = f"{test_sshd.HOST}:{run}"
            local: list[tuple[float, float]] = []
            remote: list[tuple[float, float, int]] = []
            for _ in range(rounds):
                local.append(attach_in_process(run, steps))
                remote.append(attach_remote(target, steps))
            print(f"\nfirst full frame of a {steps:,}-step run, {SIZE[0]}x{SIZE[1]} (wall):")
            print(f"  local attach, headless app:      {median_text([x[0] for x in local])}")
            print(f"  over ssh, headless app:          {median_text([r[0] for r in remote])}")
            ratio = statistics.median(r[0] for r in remote) / statistics.median(x[0] for x in local)
            print(f"  ratio:                           {ratio:.2f}x (target <= 1.5x)")
            print(f"  viewer CPU, local:               {median_text([x[1] for x in local])}")
            print(f"  viewer CPU, over ssh:            {median_text([r[1] for r in remote])}")
            mb = statistics.median(r[2] for r in remote) / 1e6
            print(f"  protocol bytes received:         {mb:.1f} MB")
            for label, what in (("RUN", run), ("HOST:RUN", target)):
                term = [attach_in_tmux(what, steps) for _ in range(rounds)]
                shown = [t for t in term if t is not None]
                text = median_text(shown) if shown else "(tmux not installed)"
                print(f"  optitui attach {label + ' in tmux:':<18}{text}")
            follow_rate(server, Path(tmp), 3.0 if args.quick else 20.0)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
