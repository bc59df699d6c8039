"""A run on "another host", through a real sshd on 127.0.0.1 (tests/sshd.py): the
dashboard follows a live job over ssh and rides out a killed connection, `optitui send`
gets the job's answers, and a stalled client does not slow the job down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from conftest import REPO, wait_for

from optitui.remote.client import RemoteRun
from optitui.remote.target import Target
from optitui.store.reader import MetricColumns, RunReader

HOST = "optitui-test"

#: a tiny own loop: as fast as a job gets, so a viewer's cost would show in its pace
LOOP = """
import sys, time, torch, optitui
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(16, 4), torch.randn(16, 1)
steps, pause = int(sys.argv[2]), float(sys.argv[3])
probe = optitui.watch(opt, model, run_dir=sys.argv[1], max_steps=steps or None)
while not probe.should_stop:
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    probe.step(loss)
    if pause:
        time.sleep(pause)
probe.close()
"""


def start_job(tmp: Path, steps: int, pause: float = 0.0) -> tuple[subprocess.Popen[bytes], Path]:
    script = tmp / "loop.py"
    script.write_text(textwrap.dedent(LOOP))
    run_dir = tmp / "runs" / "loop"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run_dir), str(steps), str(pause)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (run_dir / "store.sqlite").exists(), 120, "the job's store")
        with RunReader(run_dir) as r:
            wait_for(lambda: r.status().step > 0, 120, "the job's first steps")
    except BaseException:
        proc.kill()
        raise
    return proc, run_dir


def store_columns(run_dir: Path) -> MetricColumns:
    with RunReader(run_dir) as r:
        return r.read_metrics()


def test_dashboard_over_ssh_follows_10k_live_steps_through_a_killed_connection(
    tmp_path: Path, over_ssh: Any
) -> None:
    import asyncio

    from optitui.tui.app import build_app
    from optitui.tui.remote_feed import RemoteFeed
    from optitui.tui.widgets.alert_banner import AlertBanner

    proc, run_dir = start_job(tmp_path, 10_000)
    run = RemoteRun(Target(HOST, str(run_dir)))
    seen: dict[str, Any] = {}

    async def watch() -> None:
        run.start()
        info = run.wait_ready(60)
        assert info.host == info.writer_host  # served where it is written
        feed = RemoteFeed(run)
        feed.prefetch()
        app = build_app(None, run=run, feed=feed, note=f"over ssh from {info.host}")
        async with app.run_test(size=(120, 36)) as pilot:
            history = feed.history.metrics
            seen["history"] = history

            async def until(cond: Any, what: str, timeout: float = 60) -> None:
                deadline = time.monotonic() + timeout
                while not cond():
                    assert time.monotonic() < deadline, f"timed out waiting for {what}"
                    await pilot.pause(0.05)

            await until(lambda: history.length >= 1500, "1,500 steps on the dashboard")
            assert proc.poll() is None  # the job is mid-run: the stream is live
            seen["killed_at"] = history.length
            ssh = run.ssh_pid
            assert ssh is not None
            os.kill(ssh, signal.SIGKILL)
            banner = app.dashboard.query_one(AlertBanner)
            await until(lambda: "lost" in banner.text or run.connections > 1, "the loss shown")
            await until(lambda: run.connections == 2, "a new connection")
            await until(lambda: proc.poll() is not None, "the job's end")
            await until(
                lambda: (
                    history.length == 10_000
                    and app.dashboard.status is not None
                    and app.dashboard.status.state == "finished"
                ),
                "all 10,000 steps and the end on the dashboard",
            )
            await until(
                lambda: all(p.drawn_length == 10_000 for p in app.dashboard.plots), "plots drawn"
            )
            assert not banner.text  # the connection is well again

    try:
        asyncio.run(watch())
    finally:
        run.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.wait() == 0
    assert 1500 <= seen["killed_at"] < 10_000
    # the dashboard's history, read through two connections, is the store's, row by row
    got, want = seen["history"], store_columns(run_dir)
    assert list(got.columns["step"]) == [float(s) for s in range(1, 10_001)]
    assert got.columns.keys() == want.columns.keys()
    # to the bit (NaN-safe: the loss, and the health columns between their steps, hold NaN)
    assert all(got.columns[k].tobytes() == want.columns[k].tobytes() for k in want.columns)
    assert run.mirror.repeated == 0


def test_send_over_ssh_gets_the_jobs_answers(tmp_path: Path, over_ssh: Any) -> None:
    proc, run_dir = start_job(tmp_path, 0, pause=0.002)
    name = f"{HOST}:{run_dir}"

    def send(*words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "optitui", "send", name, *words],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    try:
        ok = send("set", "lr=0.02")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith("applied after step ")
        bad = send("set", "lr=-1")
        assert bad.returncode == 1 and "rejected" in bad.stderr
        run = RemoteRun(Target(HOST, str(run_dir)), history=False)
        run.start()
        run.wait_ready(60)
        try:
            answers = {}
            for kind in ("pause", "resume", "stop"):
                cid = run.send(kind, {})
                answers[kind] = wait_for(lambda cid=cid: run.outcome(cid), 60, f"{kind} answer")
        finally:
            run.close()
        assert all(a.applied for a in answers.values())
        assert answers["pause"].step <= answers["resume"].step <= answers["stop"].step
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with RunReader(run_dir) as r:
        assert r.status().state == "stopped"
        lr = r.read_metrics().columns["lr/0"]
    assert 0.02 in lr  # the edit reached the optimizer


STALLED_CLIENT = """
import sys, time
from optitui.remote.client import RemoteRun
from optitui.remote.target import parse
from optitui.store.reader import MetricColumns
run = RemoteRun(parse(sys.argv[1]))
run.start()
run.wait_ready(60)
cols, said = MetricColumns(), False
while True:
    run.read_metrics(cols)
    if run.mirror.synced.is_set() and not said:
        print("synced", flush=True)
        said = True
    st = run.status()
    if st.state == "finished" and cols.length >= st.step:
        break
    time.sleep(0.05)
steps = list(cols.columns["step"])
print("done", len(steps), len(set(steps)), int(steps[0]), int(steps[-1]), flush=True)
run.close()
"""


def rate(times: list[float], lo: float, hi: float) -> float:
    """Steps per second of the steps that ended in [lo, hi)."""
    n = sum(1 for t in times if lo <= t < hi)
    return n / (hi - lo)


def test_a_stalled_client_does_not_slow_the_job(tmp_path: Path, over_ssh: Any) -> None:
    # long enough that the job is still training once the client has synced and stalled,
    # even where the job runs 6,000 steps a second and ssh takes a second to connect
    proc, run_dir = start_job(tmp_path, 40_000)
    with RunReader(run_dir) as r:
        wait_for(lambda: r.status().step >= 2000, 120, "a baseline of 2,000 steps")
    attached = time.time()
    client = subprocess.Popen(
        [sys.executable, "-c", STALLED_CLIENT, f"{HOST}:{run_dir}"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: the client and its ssh stop together
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "synced"
        os.killpg(client.pid, signal.SIGSTOP)  # the client stops reading mid-stream
        stopped = time.time()
        assert proc.wait(120) == 0  # the job trains to its end meanwhile
        ended = time.time()
        os.killpg(client.pid, signal.SIGCONT)
        done = client.stdout.readline().split()
        assert client.wait(60) == 0
    finally:
        for p in (proc, client):
            if p.poll() is None:
                p.kill()
    # once resumed, the client has every step exactly once
    assert done == ["done", "40000", "40000", "1", "40000"]
    times = list(store_columns(run_dir).columns["time"])
    start = times[0]
    base = rate(times, start + 0.2 * (attached - start), attached)  # warm-up left out
    stalled = rate(times, stopped, min(ended, times[-1]))
    ratio = stalled / base
    print(f"\njob steps/s: {base:.0f} before a client, {stalled:.0f} with it stalled: {ratio:.2f}")
    assert stopped < times[-1] - 0.5, "the job ended before the client stalled: nothing measured"
    # a blocked client could only slow the job by blocking its writer; noise on a shared
    # machine moves this ratio by tens of percent, blocking would take it near zero
    assert ratio > 0.5
    with RunReader(run_dir) as r:
        assert not [e for e in r.events() if "dropped" in e.message]
