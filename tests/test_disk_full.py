"""A full disk loses nothing: metric batches wait in memory, the job stays visibly alive,
the message names the cause, and everything (the end included) is written when space
returns. On a real 4 MB tmpfs where the test may mount one (CI runs as root)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from jobs import make_trainer, tiny_job

from optitui.store import client
from optitui.store.layout import create_run_dir
from optitui.store.reader import RunReader
from optitui.store.records import Event, MetricBatch, StatusUpdate
from optitui.store.writer import Recorder, StoreWriter


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(where: Path) -> Path:
    """Fill the filesystem up to the last byte."""
    filler = where / "filler"
    for chunk in (65536, 4096, 1):
        with contextlib.suppress(OSError), open(filler, "ab") as f:
            while True:
                f.write(b"\0" * chunk)
                f.flush()
    return filler


def test_disk_full_loses_no_step(
    small_disk: Path, run_in_thread: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    trainer = make_trainer(small_disk, tiny_job(), flush_every=8, flush_seconds=0.05)
    running = run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    wait_for(lambda: reader.status().step > 20, what="training")
    filler = _fill(small_disk)
    recorder = trainer.recorder
    assert isinstance(recorder, Recorder)
    wait_for(lambda: recorder.blocked is not None, 30, "the writer to meet the full disk")
    full_at = trainer.step
    wait_for(lambda: trainer.step > full_at + 400, 60, "training on a full disk")
    # the job is alive and says so, whatever its heartbeat
    assert reader.status().state == "running"
    err = capfd.readouterr().err
    assert "no space left on device" in err and str(trainer.paths.db) in err
    assert "cannot rollback" not in err
    filler.unlink()  # space comes back
    wait_for(lambda: recorder.blocked is None, 30, "the writer to catch up")
    out = client.send(trainer.paths, "stop", timeout=30).outcome
    assert out is not None and out.applied
    running.thread.join(30)
    assert running.result == "stopped"
    st = reader.status()
    assert st.state == "stopped" and st.step == trainer.step
    steps = list(reader.read_metrics().columns["step"])
    assert steps == [float(s) for s in range(1, trainer.step + 1)]  # every step, once
    assert any("the disk was full" in e.message for e in reader.events())


class _FullDisk:
    """StoreWriter.write with a disk that is full while ``full`` is set (as SQLite says it;
    a lone status update still fits, as a one-row update does in the WAL)."""

    full = False

    @staticmethod
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        real = StoreWriter.write

        def write(writer: StoreWriter, records: Any) -> None:
            records = list(records)
            if _FullDisk.full and any(not isinstance(r, StatusUpdate) for r in records):
                raise sqlite3.OperationalError("database or disk is full")
            real(writer, records)

        monkeypatch.setattr(StoreWriter, "write", write)


def test_the_bound_on_waiting_batches_is_said_with_the_count_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    _FullDisk.patch(monkeypatch)
    paths = create_run_dir(tmp_path, "x", tmp_path / "run")
    rec = Recorder(paths, {"pid": os.getpid()}, max_queue=10, flush_interval=0.01, retry_s=0.05)
    rec.start()
    _FullDisk.full = True
    try:
        for step in range(1, 31):
            rec.put(MetricBatch({"step": [float(step)], "loss": [1.0]}))
        wait_for(lambda: rec.blocked is not None, what="blocked")
        assert rec.dropped == 20  # the first ten wait; the rest are counted
    finally:
        _FullDisk.full = False
    rec.put(Event(0, "info", "space again"))
    wait_for(lambda: rec.blocked is None, what="caught up")
    rec.close(StatusUpdate("stopped", 30, 0))
    with RunReader(paths.root) as r:
        assert list(r.read_metrics().columns["step"]) == [float(s) for s in range(1, 11)]
        warnings = [e.message for e in r.events() if e.kind == "warning"]
        assert any("20 metric batches" in w and "dropped" in w for w in warnings), warnings
        assert r.status().state == "stopped"
    assert "queue is full" in capfd.readouterr().err


def test_the_end_is_written_first_when_the_disk_stays_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _FullDisk.patch(monkeypatch)
    paths = create_run_dir(tmp_path, "x", tmp_path / "run")
    rec = Recorder(paths, {}, flush_interval=0.01, retry_s=0.05)
    rec.start()
    _FullDisk.full = True
    try:
        rec.put(MetricBatch({"step": [1.0], "loss": [1.0]}))
        rec.close(StatusUpdate("stopped", 1, 0, message="stop command"), timeout=1.0)
    finally:
        _FullDisk.full = False
    with RunReader(paths.root) as r:
        assert r.status().state == "stopped"  # not "crashed", not "running"
