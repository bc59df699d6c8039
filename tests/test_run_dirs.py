"""optitui touches only what it created: fresh run directories, no symlinks followed,
cleanup of its own files only, one job per run directory (a lock)."""

from __future__ import annotations

import gc
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_for

from optitui.launch import JobOptions, start_job
from optitui.store.layout import (
    MARKER,
    RunDirError,
    RunLock,
    create_run_dir,
    lock_held,
    new_run_path,
)
from optitui.store.reader import RunReader
from optitui.store.records import StatusUpdate
from optitui.store.writer import StoreWriter
from optitui.trainer.core import checkpoint
from optitui.trainer.entry.headless import RunOptions, SetupFailed, prepare

NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder away")


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("step00000001-periodic-abcd.pt", "notes.txt", ".x.pt.0123abcd.tmp"):
        (victim / name).write_text("precious")
    (victim / "log").write_text("precious log\n")
    return victim


def _untouched(victim: Path) -> None:
    assert sorted(p.name for p in victim.iterdir()) == [
        ".x.pt.0123abcd.tmp",
        "log",
        "notes.txt",
        "step00000001-periodic-abcd.pt",
    ]
    assert all(p.read_text().startswith("precious") for p in victim.iterdir())


@root_only
def test_another_users_planted_run_dir_is_refused(tmp_path: Path, tiny_script: Path) -> None:
    victim = _victim(tmp_path)
    planted = tmp_path / "shared"
    planted.mkdir()
    (planted / "checkpoints").symlink_to(victim)
    (planted / "inbox").mkdir()
    (planted / "output.log").symlink_to(victim / "log")
    os.chmod(planted, 0o777)
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(SetupFailed, match=f"belongs to uid {NOBODY}, not to you"):
        prepare(RunOptions(tiny_script, device="cpu", run_dir=planted))
    # the dashboard's launcher refuses it before starting any process
    with pytest.raises(RunDirError, match=f"belongs to uid {NOBODY}"):
        start_job(JobOptions(tiny_script, "cpu", run_dir=planted), timeout=30)
    _untouched(victim)
    assert not (planted / "store.sqlite").exists()


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        ("plain", "was not made by optitui"),
        ("loose", "is open to other users (mode 777"),
        ("symlink", "is a symlink"),
        ("file", "is not a folder"),
        ("link-inside", "its checkpoints is not a folder of yours"),
    ],
)
def test_existing_dirs_that_are_not_a_fresh_run_of_ours_are_refused(
    tmp_path: Path, tiny_script: Path, setup: str, needle: str
) -> None:
    victim = _victim(tmp_path)
    target = tmp_path / "target"
    if setup == "plain":
        target.mkdir(mode=0o700)
    elif setup == "loose":
        create_run_dir(tmp_path, "x", target)
        os.chmod(target, 0o777)
    elif setup == "symlink":
        made = create_run_dir(tmp_path, "x", tmp_path / "real")
        target.symlink_to(made.root)
    elif setup == "file":
        target.write_text("not a folder")
    else:
        made = create_run_dir(tmp_path, "x", target)
        os.rmdir(made.checkpoints)
        made.checkpoints.symlink_to(victim)
    with pytest.raises(SetupFailed, match=re.escape(needle)):
        prepare(RunOptions(tiny_script, device="cpu", run_dir=target))
    _untouched(victim)


def test_a_fresh_run_dir_of_ours_is_used_once(tmp_path: Path, tiny_script: Path) -> None:
    """`optitui run` makes the directory before it starts the job's process, which then
    takes it; once a store is in it, nothing else may."""
    paths = create_run_dir(tmp_path, "x", tmp_path / "made")
    assert (paths.root / MARKER).is_file()
    assert stat.S_IMODE(os.stat(paths.root).st_mode) == 0o700
    trainer = prepare(RunOptions(tiny_script, device="cpu", run_dir=paths.root))
    assert trainer.paths.root == paths.root
    trainer.recorder.close(StatusUpdate("stopped", 0, 0))
    with pytest.raises(SetupFailed, match="already holds a run"):
        prepare(RunOptions(tiny_script, device="cpu", run_dir=paths.root))


def test_files_inside_are_never_followed(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    paths = create_run_dir(tmp_path, "x", tmp_path / "run")
    cp = paths.checkpoints
    # symlinks and other users' files with optitui's own names; a stray file of the user's
    (cp / "step00000001-periodic-abcd.pt").symlink_to(victim / "step00000001-periodic-abcd.pt")
    (cp / ".step00000002-manual-beef.pt.0123abcd.tmp").symlink_to(victim / ".x.pt.0123abcd.tmp")
    (cp / "step00000003-manual-cafe.json").symlink_to(victim / "notes.txt")
    (cp / "mine.pt").write_text("the user's own file")
    (cp / "step00000004-manual-0000.pt").write_text("an orphan state of ours")
    removed = checkpoint.cleanup(cp)
    assert removed == ["step00000004-manual-0000.pt"]  # our own regular orphan, nothing else
    assert (cp / "mine.pt").exists() and os.path.islink(cp / "step00000001-periodic-abcd.pt")
    assert checkpoint.listing(cp) == []
    with pytest.raises(checkpoint.CheckpointError, match="cannot read"):
        checkpoint.load(cp / "step00000001-periodic-abcd.pt")
    _untouched(victim)


def test_launcher_makes_a_fresh_dir_and_never_appends_through_a_link(
    tmp_path: Path, tiny_script: Path
) -> None:
    victim = _victim(tmp_path)
    target = tmp_path / "made"
    paths = create_run_dir(tmp_path, "x", target)
    os.symlink(victim / "log", paths.output)  # planted between our mkdir and the launch
    with pytest.raises(RunDirError, match=r"output\.log: exists"):
        start_job(JobOptions(tiny_script, "cpu", run_dir=target), timeout=30)
    _untouched(victim)


def test_run_ids_have_64_random_bits(tmp_path: Path) -> None:
    names = {new_run_path(tmp_path, "train").name for _ in range(2000)}
    assert len(names) == 2000
    rand = [n.rsplit("-", 1)[1] for n in names]
    assert all(len(r) == 16 and int(r, 16) >= 0 for r in rand)


def test_a_second_job_on_one_run_dir_is_refused_naming_the_holder(
    tmp_path: Path, tiny_script: Path
) -> None:
    paths = create_run_dir(tmp_path, "x", tmp_path / "run")
    first = prepare(RunOptions(tiny_script, device="cpu", run_dir=paths.root))
    try:
        with pytest.raises(SetupFailed, match=f"in use by another job \\(pid {os.getpid()}\\)"):
            prepare(RunOptions(tiny_script, device="cpu", run_dir=paths.root))
        assert lock_held(paths.root) is True
    finally:
        first.recorder.close(StatusUpdate("stopped", 0, 0))
    assert lock_held(paths.root) is False


def test_a_refused_lock_leaves_nothing_for_the_collector_to_complain_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = create_run_dir(tmp_path, "x", tmp_path / "run")
    held = RunLock(paths)
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    for _ in range(3):
        with pytest.raises(RunDirError, match="in use by another job"):
            RunLock(paths)
    gc.collect()
    assert unraisable == []  # a half-made lock's __del__ said nothing on stderr
    held.release()
    RunLock(paths).release()


def test_two_jobs_started_at_once_on_one_run_dir(tmp_path: Path, tiny_script: Path) -> None:
    run_dir = tmp_path / "runs" / "same"
    argv = [sys.executable, "-m", "optitui", "run", str(tiny_script), "--headless"]
    argv += ["--run-dir", str(run_dir), "--max-steps", "200"]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = next(err for (_, err), p in zip(outs, procs, strict=True) if p.returncode == 2)
    lines = [x for x in loser.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("optitui: "), loser
    assert "Traceback" not in loser
    assert any(w in lines[0] for w in ("in use by another job (pid ", "already", "exists"))
    with RunReader(run_dir) as r:
        steps = list(r.read_metrics().columns["step"])
        assert steps == [float(s) for s in range(1, 201)]  # every step once


def test_a_live_job_is_never_called_crashed_on_its_host(tmp_path: Path) -> None:
    paths = create_run_dir(tmp_path, "x", tmp_path / "run")
    w = StoreWriter(paths, {"pid": os.getpid(), "host": socket.gethostname()})
    w.write([StatusUpdate("running", 10, 0)])
    with RunReader(paths.root) as r:
        # the heartbeat is an hour old (a full disk held it back): the process decides
        assert r.status(now=time.time() + 3600).state == "running"
        w.lock.release()  # the lock gone while the pid lives on: that pid is another process
        assert r.status().state == "crashed"
    w.close()


def test_killed_job_frees_its_run_dir_lock(tmp_path: Path, tiny_script: Path) -> None:
    from conftest import start_headless

    run_dir = tmp_path / "run"
    proc, reader = start_headless(tiny_script, run_dir)
    try:
        assert lock_held(run_dir) is True
        proc.kill()
        proc.wait(10)
        wait_for(lambda: lock_held(run_dir) is False, 10, "the lock released")
        assert reader.status().state == "crashed"
    finally:
        if proc.poll() is None:
            proc.kill()
