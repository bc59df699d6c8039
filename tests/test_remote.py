"""The serve-stdio protocol without an sshd: the client and the server in real processes
joined by pipes (tests/local_ssh.py stands in for ssh), or the server in this process.

What ssh itself adds (keys, config, a dropped TCP connection, a stalled client) is in
test_remote_ssh.py, against a real sshd.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, wait_for

from optitui.remote import protocol
from optitui.remote.client import RemoteError, RemoteRun, list_runs
from optitui.remote.owner import LEDGER
from optitui.remote.server import Server
from optitui.remote.target import Target, TargetError, parse
from optitui.store import commands
from optitui.store.layout import create_run_dir
from optitui.store.reader import MetricColumns, RunReader
from optitui.store.records import Event, MetricBatch, Outcome, RaceUpdate, StatusUpdate
from optitui.store.writer import Recorder, StoreWriter

CHUNK = 64


@pytest.fixture
def local_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ssh HOST CMD` runs CMD here: real processes and pipes, no sshd."""
    monkeypatch.setenv("OPTITUI_SSH", f"{sys.executable} {REPO / 'tests' / 'local_ssh.py'}")
    monkeypatch.setenv("OPTITUI_REMOTE", f"env PYTHONPATH={REPO} {sys.executable} -m optitui")


def batch(first: int, n: int = CHUNK) -> MetricBatch:
    steps = [float(s) for s in range(first, first + n)]
    return MetricBatch({"step": steps, "loss": [1.0 / s for s in steps], "lr/0": [0.1] * n})


class LiveRun:
    """A run store written by a thread as a job would: 64-step rows and an event now and then."""

    def __init__(self, tmp: Path, total: int, pace: float = 0.002, hold_at: int = 0) -> None:
        self.paths = create_run_dir(tmp, "live", tmp / "live")
        meta = {"pid": os.getpid(), "host": socket.gethostname(), "groups": ["all"]}
        self.rec = Recorder(self.paths, meta, flush_interval=0.01)
        self.rec.start()
        self.rec.put(StatusUpdate("running", 0, 0))
        self.total, self.pace = total, pace
        self.hold_at = hold_at  # the writer waits at this step until `go` is set
        self.go = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self) -> None:
        for first in range(1, self.total + 1, CHUNK):
            if first > self.hold_at:
                self.go.wait()
            self.rec.put(batch(first, min(CHUNK, self.total - first + 1)))
            if first % (10 * CHUNK) == 1:
                self.rec.put(Event(first, "info", f"at {first}"))
            time.sleep(self.pace)
        self.rec.put(StatusUpdate("finished", self.total, 0, message="done"))
        self.done.set()

    def close(self) -> None:
        self.go.set()
        self.thread.join(30)
        self.rec.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveRun]:
    run = LiveRun(tmp_path, total=6400, hold_at=2000)
    yield run
    run.close()


def follow(run: RemoteRun, cols: MetricColumns, steps: int, timeout: float = 30) -> None:
    def more() -> bool:
        run.read_metrics(cols)
        return cols.length >= steps

    wait_for(more, timeout, f"{steps} steps through the link")


# -- names of remote runs -----------------------------------------------------------------
def test_remote_names_parse_like_scp_and_ssh_urls(tmp_path: Path) -> None:
    assert parse("gpu1:runs/big") == Target("gpu1", "runs/big")
    assert parse("gpu1:") == Target("gpu1", "")
    assert parse("me@gpu1:/x") == Target("gpu1", "/x", "me")
    assert parse("ssh://me@h.example:2222/shared/runs") == Target(
        "h.example", "/shared/runs", "me", 2222
    )
    assert parse("ssh://h/~/runs") == Target("h", "~/runs")
    assert parse("[::1]:r").label == "[::1]:r"  # type: ignore[union-attr]
    assert parse("runs/big") is None and parse("a/b:c") is None
    local = tmp_path / "odd:name"
    local.mkdir()
    assert parse(str(local)) is None  # an existing path is always local
    for bad in ("-oProxyCommand=evil:x", "a b:c", "ssh://h/x?y=1"):
        with pytest.raises(TargetError):
            parse(bad)
    argv = Target("gpu1", "runs/it's").ssh_argv(["serve-stdio", "runs/it's"], batch=True)
    assert argv[-3:-1] == ["--", "gpu1"] and "BatchMode=yes" in argv
    assert argv[-1].endswith("serve-stdio 'runs/it'\"'\"'s'")  # quoted for the remote shell


def test_metric_rows_travel_bit_for_bit_in_fewer_bytes() -> None:
    import math
    import zlib

    from optitui.remote import blobs
    from optitui.store import metrics

    n = 64
    columns = {
        "step": [float(s) for s in range(101, 101 + n)],  # counting: its first value only
        "lr/0": [0.1] * n,  # one value
        "loss": [math.nan, math.inf, -0.0] + [1 / s for s in range(3, n)],
        "big": [2.0**53 - 32 + s for s in range(n)],  # whole, past exact counting
        "neg0": [-0.0] * (n - 1) + [0.0],
    }
    names, _, blob = metrics.encode(columns)
    k = len(names)
    kinds, data = blobs.encode(blob, n, k)
    assert kinds == "rcvvv" and len(data) == len(blob) - 2 * (8 * n - 8)
    assert blobs.decode(data, kinds, n, k) == blob  # bit for bit
    packed = blobs.pack(data)
    assert len(packed) < len(data) and blobs.unpack(packed, len(data)) == data
    bomb = zlib.compress(b"\0" * 10_000_000)
    with pytest.raises(protocol.ProtocolError, match="not 1536 bytes"):
        blobs.unpack(bomb, 1536)  # inflates no further than the rows hold
    for bad, which in ((data[:-1], kinds), (data, "rcvv"), (data, "rcxvv"), (data, 5)):
        with pytest.raises(protocol.ProtocolError):
            blobs.decode(bad, which, n, k)


def test_a_payload_is_read_whole_or_refused() -> None:
    import io

    line = protocol.dump_with({"t": "m"}, b"\n\x00" * 5) + protocol.dump({"t": "tick"})
    stream = io.BytesIO(line)
    first = protocol.read_line(stream, 100)
    assert first is not None and first["payload"] == b"\n\x00" * 5
    assert protocol.read_line(stream, 100) == {"t": "tick"}
    for bad in (protocol.dump_with({"t": "m"}, b"x" * 200), protocol.dump({"bytes": 9}) + b"x"):
        with pytest.raises(protocol.LineTooLong):
            protocol.read_line(io.BytesIO(bad), 100)


# -- following ----------------------------------------------------------------------------
def test_follow_and_reconnect_lose_and_repeat_nothing(live: LiveRun, local_ssh: None) -> None:
    run = RemoteRun(Target("localhost", str(live.paths.root)), interval=0.05)
    run.start()
    try:
        info = run.wait_ready(30)
        assert info.name == "live" and info.writer_host == socket.gethostname()
        cols = MetricColumns()
        follow(run, cols, 1500)
        first_ssh = run.ssh_pid
        assert first_ssh is not None
        os.kill(first_ssh, 9)  # the connection dies under the stream...
        live.go.set()  # ...while the job writes on
        wait_for(lambda: run.connections == 2, 30, "a second connection")
        follow(run, cols, live.total)
        wait_for(lambda: run.status().state == "finished", 30, "the end")
    finally:
        run.close()
    assert list(cols.columns["step"]) == [float(s) for s in range(1, live.total + 1)]
    assert cols.columns["loss"][-1] == 1.0 / live.total
    with RunReader(live.paths.root) as r:
        assert [e.id for e in run.events()] == [e.id for e in r.events()]
        assert cols.last_id == r.read_metrics().last_id
    assert run.mirror.repeated == 0  # the server continued from the cursors, not before


def test_a_race_travels_as_it_runs_and_ends(live: LiveRun, local_ssh: None) -> None:
    """A race is rewritten in place while it runs: the remote client sees each rewrite,
    and the table once it ends (what send HOST:RUN race prints)."""
    config = {"steps": 2, "val": False, "candidates": ["current", "lr*2"]}
    data = {"losses": [[1.0, 0.9], [1.0]], "states": ["done", "running"]}
    live.rec.put(RaceUpdate("r1", 5, "running", config, data))
    run = RemoteRun(Target("localhost", str(live.paths.root)), interval=0.05)
    run.start()
    try:
        run.wait_ready(30)
        wait_for(lambda: run.race("r1") is not None, 30, "the race")
        assert run.race("r1").data == data and run.race("r1").status == "running"  # type: ignore[union-attr]
        table = [{"candidate": 1, "text": "lr*2", "final": 0.8, "rank": 1}]
        live.rec.put(RaceUpdate("r1", 5, "done", config, data, table))
        wait_for(lambda: run.race("r1").status == "done", 30, "the end")  # type: ignore[union-attr]
    finally:
        run.close()
    with RunReader(live.paths.root) as r:
        assert run.race("r1") == r.races("r1")[0]


def test_stalled_client_blocks_only_the_server(tmp_path: Path) -> None:
    """A client that stops reading leaves the server blocked in write, holding one batch
    and no read transaction: the job's writes and WAL checkpoints go on."""
    paths = create_run_dir(tmp_path, "big", tmp_path / "big")
    w = StoreWriter(paths, {"host": socket.gethostname()})
    rows = 1200  # 1200 rows x 64 steps x 3 columns: 1.8 MB, far more than a pipe holds
    w.write([batch(1 + i * CHUNK) for i in range(rows)])
    req_r, req_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(req_w, protocol.dump({"op": "follow", "run": str(paths.root)}))
    server = Server(os.fdopen(req_r, "rb"), os.fdopen(out_w, "wb"))
    serving = threading.Thread(target=server.serve, daemon=True)
    serving.start()

    def blocked() -> bool:
        before = server.sent_bytes
        time.sleep(0.3)
        return 0 < before == server.sent_bytes

    wait_for(blocked, 20, "the server blocked on its stalled client")
    follow_state = server.follow
    assert follow_state is not None
    assert follow_state.metrics <= 2 * 256  # it read at most one batch ahead of the pipe
    t0 = time.perf_counter()
    for i in range(rows, rows + 200):  # the job writes on as fast as it can
        w.write([batch(1 + i * CHUNK)])
    writes = time.perf_counter() - t0
    conn = sqlite3.connect(paths.db)
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    conn.close()
    assert busy == 0  # no reader holds a snapshot: the server is not in a transaction
    assert writes < 30  # 200 commits, not blocked (a generous bound; typically < 1 s)

    got = MetricColumns()
    reader = os.fdopen(out_r, "rb")
    from optitui.remote.mirror import Mirror

    mirror = Mirror()
    while got.length < (rows + 200) * CHUNK:  # the client wakes up: everything arrives
        msg = protocol.read_line(reader, protocol.MAX_LINE)
        assert msg is not None
        mirror.apply(msg, time.time())
        mirror.read_metrics(got)
    assert list(got.columns["step"]) == [float(s) for s in range(1, (rows + 200) * CHUNK + 1)]
    os.close(req_w)
    serving.join(10)
    reader.close()
    w.close()


# -- commands -----------------------------------------------------------------------------
def test_a_repeated_command_is_delivered_once(tmp_path: Path) -> None:
    paths = create_run_dir(tmp_path, "cmd", tmp_path / "cmd")
    w = StoreWriter(paths, {"host": socket.gethostname()})
    w.write([StatusUpdate("running", 3, 0)])
    cid = commands.new_id()
    send = {"op": "send", "id": cid, "kind": "set", "args": {"values": {"lr": 0.5}}}
    bad = {"op": "send", "id": "x2", "kind": "set", "args": {"values": {"lr": "high"}}}

    def session(*requests: dict[str, object]) -> list[dict[str, object]]:
        lines = [{"op": "follow", "run": str(paths.root)}, *requests]
        proc = subprocess.run(
            [sys.executable, "-m", "optitui", "serve-stdio"],
            input=b"".join(protocol.dump(x) for x in lines),
            capture_output=True,
            timeout=60,
            check=False,
        )
        return [json.loads(line) for line in proc.stdout.splitlines()]

    first = session(send, bad)
    again = session(send)  # a reconnecting client repeats what it was not told was sent
    assert {"t": "sent", "id": cid} in first and {"t": "sent", "id": cid} in again
    (refused,) = [m for m in first if m.get("t") == "refused"]
    assert refused["id"] == "x2" and "lr" in str(refused["reason"])
    assert [p.name for p in paths.inbox.glob("*.json")] == [f"{cid}.json"]  # once
    assert (paths.root / LEDGER).read_text().split() == [cid]
    # answered, the command is not delivered again either (even without the ledger)
    (paths.root / LEDGER).unlink()
    for p in paths.inbox.glob("*.json"):
        p.unlink()
    w.write([Outcome(cid, "set", "{}", True, 3)])
    assert {"t": "sent", "id": cid} in session(send)
    assert not list(paths.inbox.glob("*.json"))
    w.close()


# -- refusals -----------------------------------------------------------------------------
def _serve(run: Path) -> list[dict[str, object]]:
    proc = subprocess.run(
        [sys.executable, "-m", "optitui", "serve-stdio", str(run)],
        input=protocol.dump({"op": "follow"}),
        capture_output=True,
        timeout=60,
        check=False,
    )
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_only_this_users_private_runs_are_served(tmp_path: Path) -> None:
    paths = create_run_dir(tmp_path, "mine", tmp_path / "mine")
    StoreWriter(paths, {}).close()
    assert [m["t"] for m in _serve(paths.root)][:2] == ["hello", "run"]
    os.chmod(paths.root, 0o777)
    (_, error) = _serve(paths.root)
    assert error["t"] == "error" and "open to other users" in str(error["text"])
    os.chmod(paths.root, 0o700)
    other = create_run_dir(tmp_path, "link", tmp_path / "link")
    other.db.symlink_to(paths.db)  # a store that is someone else's file
    (_, error) = _serve(other.root)
    assert "refused" in str(error["text"]) and "not a regular file" in str(error["text"])
    if os.geteuid() == 0:
        os.chown(paths.root, 65534, 65534)
        (_, error) = _serve(paths.root)
        assert "belongs to uid 65534" in str(error["text"])


def test_unreachable_and_refused_runs_are_clear_errors(
    tmp_path: Path, local_ssh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = RemoteRun(Target("localhost", str(tmp_path / "nothing")))
    run.start()
    with pytest.raises(RemoteError, match="not a run directory"):
        run.wait_ready(30)
    assert run.undelivered(run.send("pause", {})) is not None  # never goes anywhere
    run.close()
    monkeypatch.setenv("OPTITUI_REMOTE", "no-such-optitui")
    run = RemoteRun(Target("localhost", str(tmp_path)))
    run.start()
    with pytest.raises(RemoteError, match="OPTITUI_REMOTE"):
        run.wait_ready(30)
    run.close()


def test_a_greeting_from_another_version_is_refused(
    tmp_path: Path, local_ssh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "old_optitui"
    fake.write_text(
        "#!/bin/sh\necho 'Welcome to gpu1'\n"  # a login script's noise is skipped
        'echo \'{"t": "hello", "protocol": 99, "version": "9.0"}\'\ncat >/dev/null\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("OPTITUI_REMOTE", str(fake))
    run = RemoteRun(Target("localhost", str(tmp_path)))
    run.start()
    with pytest.raises(RemoteError, match="protocol 99 and this one 1"):
        run.wait_ready(30)
    run.close()


def test_ls_on_another_host(tmp_path: Path, local_ssh: None) -> None:
    for name in ("a", "b"):
        paths = create_run_dir(tmp_path / "runs", name, tmp_path / "runs" / name)
        w = StoreWriter(paths, {"host": "gpu7" if name == "b" else socket.gethostname()})
        w.write([batch(1), StatusUpdate("finished", 64, 0)])
        w.close()
    got = list_runs(Target("localhost", str(tmp_path / "runs")), show_all=False)
    assert [r[0] for r in got["rows"]] == ["b", "a"]  # newest first
    assert any("written on gpu7" in n and "heartbeat only" in n for n in got["notes"])
    out = subprocess.run(
        [sys.executable, "-m", "optitui", "ls", f"localhost:{tmp_path / 'runs'}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split()[:3] == ["RUN", "STATE", "STEP"]
    assert "finished" in out.stdout and "attach gpu7:RUN" in out.stdout
    data = subprocess.run(
        [sys.executable, "-m", "optitui", "ls", f"localhost:{tmp_path / 'runs'}", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert data.returncode == 0, data.stderr
    runs = json.loads(data.stdout)["runs"]
    assert [(r["run"], r["state"], r["host"]) for r in runs] == [
        ("b", "finished", "gpu7"),
        ("a", "finished", socket.gethostname()),
    ]


def test_the_server_imports_no_torch_and_writes_nothing(tmp_path: Path) -> None:
    paths = create_run_dir(tmp_path, "r", tmp_path / "r")
    w = StoreWriter(paths, {})
    w.write([batch(1), StatusUpdate("running", 64, 0)])
    w.close()
    before = sorted((p.name, p.stat().st_mtime_ns) for p in paths.root.iterdir())
    code = (
        "import sys, io\n"
        "from optitui.remote.server import Server\n"
        "from optitui.remote import protocol\n"
        f"req = protocol.dump({{'op': 'follow', 'run': {str(paths.root)!r}}})\n"
        "out = io.BytesIO()\n"
        "Server(io.BytesIO(req), out).serve()\n"
        "assert b'synced' in out.getvalue(), out.getvalue()[-500:]\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'textual', 'numpy'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""
    after = sorted((p.name, p.stat().st_mtime_ns) for p in paths.root.iterdir())
    shared = ("store.sqlite-wal", "store.sqlite-shm")  # SQLite's files of any reader
    assert [x for x in after if x[0] not in shared] == [x for x in before if x[0] not in shared]


def test_attach_to_a_remote_run_that_is_not_there_says_so(
    tmp_path: Path,
    local_ssh: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from optitui.cli import attach, main

    monkeypatch.setattr(attach, "has_terminal", lambda: True)
    assert main(["attach", f"gpu1:{tmp_path / 'none'}"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("optitui: gpu1:") and "not a run directory" in out.err
    assert out.err.count("\n") == 1  # one line, no traceback
