"""The run store: readable while written, crash detection, command-file checks."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import start_headless, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

from optitui.store import commands, inbox_files, metrics
from optitui.store.layout import RunDirError, create_run_dir, find_runs
from optitui.store.reader import RunReader, latest_running_run
from optitui.store.records import Event, MetricBatch, StatusUpdate
from optitui.store.writer import Recorder, StoreWriter


def test_metric_blob_round_trip() -> None:
    cols = {"step": [1.0, 2.0, 3.0], "loss": [0.5, float("nan"), 0.25]}
    names, n, blob = metrics.encode(cols)
    out = metrics.decode(names, n, blob)
    assert list(out["step"]) == [1.0, 2.0, 3.0]
    assert out["loss"][0] == 0.5 and out["loss"][2] == 0.25 and out["loss"][1] != out["loss"][1]
    with pytest.raises(ValueError, match="does not hold"):
        metrics.decode(names, n + 1, blob)
    with pytest.raises(ValueError, match="has 2 values"):
        metrics.encode({"step": [1.0, 2.0, 3.0], "loss": [1.0, 2.0]})


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(st.floats(width=64), st.integers(-(2**53), 2**53), st.booleans()),
            min_size=3,
            max_size=3,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_blob_holds_each_value_as_the_float64_it_is(cols: list[list[float]]) -> None:
    """Every value, ints and bools too (NaN, inf, -0.0 as they are), is written as a
    little-endian float64, column after column, whatever the host's byte order."""
    columns: dict[str, Sequence[float]] = {"step": range(3)}
    columns.update({f"c{i}": c for i, c in enumerate(cols)})
    names, n, blob = metrics.encode(columns)
    assert (names, n) == (list(columns), 3)
    want = b"".join(struct.pack("<d", float(v)) for c in columns.values() for v in c)
    assert blob == want
    back = metrics.decode(names, n, blob)
    for name, col in columns.items():
        assert [struct.pack("<d", v) for v in back[name]] == [
            struct.pack("<d", float(v)) for v in col
        ]


def test_a_column_of_something_else_is_named() -> None:
    with pytest.raises(TypeError, match="column 'loss'"):
        metrics.encode({"step": [1, 2], "loss": [0.5, None]})  # type: ignore[list-item]


def test_run_dir_is_private(tmp_path: Path) -> None:
    paths = create_run_dir(tmp_path, "my run!")
    assert stat.S_IMODE(paths.root.stat().st_mode) == 0o700
    assert paths.root.name.startswith("my-run-")
    StoreWriter(paths, {}).close()
    with pytest.raises(RunDirError, match="already holds a run"):
        create_run_dir(tmp_path, "x", paths.root)


def test_readable_while_written(tmp_path: Path) -> None:
    paths = create_run_dir(tmp_path, "live")
    rec = Recorder(paths, {"pid": os.getpid()}, flush_interval=0.001)
    rec.start()
    total, chunk = 20_000, 37
    done = threading.Event()

    def write() -> None:
        step = 0
        while step < total:
            n = min(chunk, total - step)
            steps = [float(s) for s in range(step + 1, step + n + 1)]
            while not rec.put(MetricBatch({"step": steps, "loss": [s * 0.5 for s in steps]})):
                time.sleep(0.001)
            rec.put(Event(step, "info", f"at {step}"))
            step += n
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    reader = RunReader(paths.root)
    cols = None
    reads = 0
    while not done.is_set() or (cols is None or cols.length < total):
        cols = reader.read_metrics(cols)
        reads += 1
        # every read sees whole rows: steps contiguous from 1, columns equally long
        assert len(cols.columns.get("step", [])) == cols.length
        assert len(cols.columns.get("loss", [])) == cols.length
        if cols.length:
            assert cols.columns["step"][-1] == cols.length
            assert cols.columns["loss"][-1] == cols.length * 0.5
        if done.is_set() and reads > 10_000:
            break
    writer.join()
    rec.close()
    assert cols is not None and cols.length == total and reads > 1
    assert len(reader.events()) == len(range(0, total, chunk))


def test_stale_heartbeat_reads_as_crashed(tmp_path: Path) -> None:
    paths = create_run_dir(tmp_path, "stale")
    w = StoreWriter(paths, {"pid": os.getpid(), "host": "elsewhere"})
    w.write([StatusUpdate("running", 10, 0)])
    with RunReader(paths.root) as r:
        assert r.status().state == "running"
        later = r.status(now=time.time() + 3600)
        assert later.state == "crashed" and later.step == 10 and later.message
    w.close()


def test_killed_job_shows_as_crashed(tmp_path: Path, tiny_script: Path) -> None:
    run_dir = tmp_path / "runs" / "killed"
    proc, reader = start_headless(tiny_script, run_dir)
    try:
        wait_for(
            lambda: reader.status().state == "running" and reader.status().step > 0,
            60,
            "running job",
        )
        assert latest_running_run(tmp_path / "runs") is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        st = reader.status()
        assert st.state == "crashed" and st.step > 0
        assert latest_running_run(tmp_path / "runs") is None
        out = subprocess.run(
            [sys.executable, "-m", "optitui", "ls", "--root", str(tmp_path / "runs")],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "killed" in out.stdout and "crashed" in out.stdout
    finally:
        if proc.poll() is None:
            proc.kill()


def test_newer_store_is_named(tmp_path: Path) -> None:
    paths = create_run_dir(tmp_path, "future")
    StoreWriter(paths, {"schema_version": 99}).close()
    with RunReader(paths.root) as r:
        assert r.schema_problem() is None  # the writer stamps its own version last
    conn = sqlite3.connect(paths.db)  # as a later optitui version would have written it
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with RunReader(paths.root) as r:
        problem = r.schema_problem()
        assert problem is not None and "99" in problem and "reads version 1" in problem


def _inbox_with(tmp_path: Path) -> commands.RunPaths:
    paths = create_run_dir(tmp_path, "inbox")
    StoreWriter(paths, {}).close()
    return paths


def test_inbox_takes_valid_commands_in_order(tmp_path: Path) -> None:
    paths = _inbox_with(tmp_path)
    ids = [commands.send(paths, "pause"), commands.send(paths, "step", {"n": 2})]
    got = inbox_files.take_inbox(paths)
    assert [c.id for c in got] == ids
    assert not any(paths.inbox.iterdir())


def test_inbox_refuses_bad_files(tmp_path: Path) -> None:
    paths = _inbox_with(tmp_path)
    (paths.inbox / "a-big.json").write_bytes(b" " * (commands.MAX_COMMAND_BYTES + 10))
    (paths.inbox / "b-junk.json").write_bytes(b"\xff\xfe not json")
    target = tmp_path / "elsewhere.json"
    target.write_text('{"kind": "stop"}')
    (paths.inbox / "c-link.json").symlink_to(target)
    os.mkfifo(paths.inbox / "d-fifo.json")
    reasons = {
        r.id: r.reason for r in inbox_files.take_inbox(paths) if isinstance(r, commands.Rejected)
    }
    assert "limit is" in reasons["a-big"]
    assert "not a JSON command" in reasons["b-junk"]
    assert "not a regular file" in reasons["c-link"]
    assert "not a regular file" in reasons["d-fifo"]
    # the regular files of ours were read and removed; the symlink and the FIFO are left
    # in place (never opened, never removed) and ignored from now on
    left = sorted(p.name for p in paths.inbox.iterdir())
    assert target.exists() and left == ["c-link.json", "d-fifo.json"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_inbox_refuses_foreign_owner(tmp_path: Path) -> None:
    paths = _inbox_with(tmp_path)
    cid = commands.send(paths, "stop")
    os.chown(paths.inbox / f"{cid}.json", 65534, 65534)
    (got,) = inbox_files.take_inbox(paths)
    assert isinstance(got, commands.Rejected) and "owned by uid 65534" in got.reason


def test_inbox_refuses_loose_directory(tmp_path: Path) -> None:
    paths = _inbox_with(tmp_path)
    commands.send(paths, "stop")
    os.chmod(paths.root, 0o777)
    (got,) = inbox_files.take_inbox(paths)
    assert isinstance(got, commands.Rejected) and "writable by other users" in got.reason


def test_find_runs(tmp_path: Path) -> None:
    for name in ("a", "b"):
        StoreWriter(create_run_dir(tmp_path, name, tmp_path / name), {}).close()
    (tmp_path / "not-a-run").mkdir()
    assert [r.root.name for r in find_runs(tmp_path)] == ["a", "b"]
