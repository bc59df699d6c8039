"""A run directory on a network filesystem: detected from statfs, its store kept on the
writer's own disk while the job runs, viewers elsewhere sent to `attach HOST:RUN`, and
the finished store copied back as a plain file any host can read.

No NFS server runs here: the detection is simulated (statfs answers NFS's magic for
the "shared" folder), and "another host" is this one under another hostname.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from jobs import make_trainer, tiny_job

from optitui.cli.ls import listing, render
from optitui.store import netfs, placement
from optitui.store.client import resolve_run
from optitui.store.reader import RunReader, open_reader

NFS = 0x6969
MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /home rw,relatime shared:20 - nfs4 fs1:/home rw,vers=4.2
41 22 0:36 / /mnt/my\\040box rw,relatime - fuse.sshfs me@box:/ rw,user_id=0
42 22 0:37 / /run/user/0/doc rw - fuse.portal portal rw
"""


def test_network_filesystems_are_told_from_local_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = netfs.statfs_type(tmp_path)
    assert isinstance(here, int) and here not in netfs.NETWORK_TYPES  # the real call
    assert netfs.network_filesystem(tmp_path) is None
    for magic, name in ((NFS, "nfs"), (0x0BD00BD0, "lustre"), (0xFF534D42, "cifs")):
        monkeypatch.setattr(netfs, "statfs_type", lambda p, m=magic: m)
        assert netfs.network_filesystem(tmp_path) == name
    monkeypatch.setattr(netfs, "statfs_type", lambda p: netfs.FUSE)
    assert netfs.mount_type("/mnt/my box/x", MOUNTINFO) == "fuse.sshfs"
    assert netfs.mount_type("/home/me", MOUNTINFO) == "nfs4"
    assert netfs.mount_type("/var", MOUNTINFO) == "ext4"
    monkeypatch.setattr(netfs, "mount_type", lambda p: "fuse.sshfs")
    assert netfs.network_filesystem(tmp_path) == "fuse.sshfs"
    monkeypatch.setattr(netfs, "mount_type", lambda p: "fuse.portal")  # a local FUSE
    assert netfs.network_filesystem(tmp_path) is None
    monkeypatch.setenv("OPTITUI_NETWORK_FS", "no")
    monkeypatch.setattr(netfs, "statfs_type", lambda p: NFS)
    assert netfs.network_filesystem(tmp_path) is None  # the user knows better


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder statfs reports as NFS; this node's own disk is another folder."""
    shared = tmp_path / "shared"
    shared.mkdir()
    real = netfs.statfs_type

    def statfs(path: Any) -> int | None:
        inside = Path(os.path.realpath(path)).is_relative_to(shared)
        return NFS if inside else real(path)

    monkeypatch.setattr(netfs, "statfs_type", statfs)
    (tmp_path / "node").mkdir()
    monkeypatch.setenv("OPTITUI_NODE_STORE", str(tmp_path / "node"))
    return shared


def test_a_run_on_a_network_filesystem_keeps_its_store_on_the_writers_disk(
    shared: Path, monkeypatch: pytest.MonkeyPatch, run_in_thread: Any
) -> None:
    trainer = make_trainer(shared, tiny_job(), name="big")
    run_dir = trainer.paths.root
    running = run_in_thread(trainer)
    me = socket.gethostname()
    with RunReader(run_dir) as r:  # on the writer's host the pointer is followed
        wait_for(lambda: r.status().step >= 50, 60, "50 steps")
        assert r.meta()["host"] == me

    # while it runs: no database in the shared directory, a pointer to this node's disk
    assert not (run_dir / "store.sqlite").exists()
    where = placement.read_pointer(run_dir)
    assert where is not None and where.host == me and where.fs == "nfs"
    node_store = Path(where.path)
    assert node_store.is_file() and node_store.parent.parent == shared.parent / "node"
    assert (run_dir / "checkpoints").is_dir() and (run_dir / "inbox").is_dir()  # shared
    found = listing(shared, False, 0.0)
    assert found.rows[0][:2] == ("big", "running") and not found.notes

    # a viewer on another host is told where the run is, and how to reach it
    monkeypatch.setattr(socket, "gethostname", lambda: "login1")
    with pytest.raises(FileNotFoundError) as refused:
        open_reader(resolve_run(run_dir).root)
    text = str(refused.value)
    assert f"on {me}'s local disk" in text and f"optitui attach {me}:{run_dir}" in text
    found = listing(shared, False, 0.0)
    assert found.rows[0][:2] == ("big", f"on {me}")
    (note,) = found.notes
    assert f"optitui ls {me}:{shared}" in note and "SQLite cannot be shared" in note
    assert f"on {me}" in "\n".join(render(found))
    monkeypatch.undo()  # back on the writer's host (the env and statfs set again below)
    monkeypatch.setattr(netfs, "statfs_type", lambda p: NFS)
    monkeypatch.setenv("OPTITUI_NODE_STORE", str(shared.parent / "node"))

    running.stop()
    assert running.error is None and trainer.step >= 50

    # the job closed its store: it is in the run directory now, as a plain finished file
    db = run_dir / "store.sqlite"
    assert db.is_file() and not (run_dir / "store.where").exists()
    assert placement.read_pointer(run_dir) is None and placement.settled(run_dir)
    assert "nfs" in (run_dir / "store.settled").read_text()  # where it was written, kept
    assert not node_store.exists() and not node_store.parent.exists()
    with sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # no -shm
    monkeypatch.setattr(socket, "gethostname", lambda: "login1")
    with RunReader(run_dir) as r:  # any host reads it (immutable: no locks needed)
        st = r.status()
        assert st.state == "stopped" and st.step == trainer.step
        assert r.read_metrics().length == trainer.step
        assert r.writer_host() == me
    with pytest.raises(sqlite3.OperationalError), RunReader(run_dir) as r:  # read-only
        r.conn.execute("PRAGMA query_only = OFF")
        r.conn.execute("UPDATE status SET step = 0")
    (note,) = listing(shared, False, 0.0).notes
    assert f"written on {me}, read here on login1" in note and "heartbeat only" in note


def test_a_stale_heartbeat_from_another_host_says_how_it_was_judged(tmp_path: Path) -> None:
    from optitui.store.layout import create_run_dir
    from optitui.store.records import StatusUpdate
    from optitui.store.writer import StoreWriter

    paths = create_run_dir(tmp_path, "far")
    w = StoreWriter(paths, {"pid": os.getpid(), "host": "gpu7"})
    w.write([StatusUpdate("running", 10, 0)])
    w.close()
    with RunReader(paths.root) as r:
        assert r.status().state == "running"  # its pid is not looked for on this host
        late = r.status(now=r.status().heartbeat + 60)
    assert late.state == "crashed" and late.message is not None
    assert "gpu7" in late.message and "heartbeat only" in late.message


def test_readers_in_the_writers_own_process_leave_its_locks_alone(tmp_path: Path) -> None:
    """The job's process reads its store too (progress lines); nothing there may open the
    database file behind SQLite's back (closing such a descriptor drops the writer's locks,
    and the next reader elsewhere then deletes the WAL under the writer)."""
    import subprocess
    import sys

    from optitui.store.layout import create_run_dir
    from optitui.store.records import StatusUpdate
    from optitui.store.writer import StoreWriter

    paths = create_run_dir(tmp_path, "own")
    w = StoreWriter(paths, {})
    for _ in range(3):
        RunReader(paths.root).close()
    code = (
        "import sys; from optitui.store.reader import RunReader as R; "
        "print(R(sys.argv[1]).status().step)"
    )

    def step_seen_elsewhere() -> int:
        out = subprocess.run(
            [sys.executable, "-c", code, str(paths.root)],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout)

    for step in (1, 2):
        w.write([StatusUpdate("running", step, 0)])
        assert step_seen_elsewhere() == step
    w.close()


def test_attach_says_when_the_job_is_on_another_host() -> None:
    from optitui.cli.attach import writer_note

    assert (
        writer_note("gpu7", "login1") == "job on gpu7, viewer on login1: liveness by heartbeat only"
    )
    assert writer_note("login1", "login1") == "" and writer_note(None, "login1") == ""
