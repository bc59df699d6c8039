"""The machine's series in the run store: batches per rank, read back incrementally."""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
from pathlib import Path

import pytest

from optitui.cli import main
from optitui.store import system
from optitui.store.layout import create_run_dir
from optitui.store.reader import RunReader
from optitui.store.records import SystemBatch
from optitui.store.writer import StoreWriter


def _batch(rank: int, t0: float, n: int, gpu: bool = True) -> SystemBatch:
    cols: dict[str, list[float]] = {
        "time": [t0 + 2 * i for i in range(n)],
        "step": [float(10 * i) for i in range(n)],
        "cpu_percent": [100.0 + i for i in range(n)],
        "rss_bytes": [2.0**30] * n,
    }
    if gpu:
        cols[system.gpu_series(rank, "util_percent")] = [90.0 - rank * 50] * n
        cols[system.gpu_series(rank, "mem_used_bytes")] = [3.0 * 2**30] * n
    return SystemBatch(rank, cols)


def test_series_round_trip_by_rank_and_incrementally(tmp_path: Path) -> None:
    paths = create_run_dir(tmp_path, "run")
    w = StoreWriter(paths, {})
    w.write([_batch(0, 100.0, 3), _batch(1, 100.5, 3)])
    with RunReader(paths.root) as r:
        got = system.read(r.conn)
        assert sorted(got.ranks) == [0, 1]
        assert list(got.ranks[0].columns["time"]) == [100.0, 102.0, 104.0]
        assert list(got.ranks[1].columns["gpu1/util_percent"]) == [40.0] * 3
        assert got.latest(0)["cpu_percent"] == 102.0
        w.write([_batch(0, 106.0, 2, gpu=False)])  # a batch without the GPU's fields
        system.read(r.conn, got)
        col = got.ranks[0].columns["gpu0/util_percent"]
        assert len(col) == 5 and math.isnan(col[-1]) and col[0] == 90.0
        assert "gpu0/util_percent" not in got.latest(0)  # NaN is no reading
        assert got.ranks[1].length == 3  # untouched
        assert r.read_system(got) is got and got.ranks[0].length == 5  # nothing new
        assert system.gpus(list(got.ranks[0].columns)) == [0]
    w.close()


def test_a_store_made_before_the_machine_was_recorded_reads_empty(tmp_path: Path) -> None:
    paths = create_run_dir(tmp_path, "run")
    StoreWriter(paths, {}).close()
    conn = sqlite3.connect(paths.db)
    conn.execute("DROP TABLE system")
    conn.close()
    with RunReader(paths.root) as r:
        got = system.read(r.conn)
    assert got.ranks == {} and got.latest() == {}


def _machine_run(root: Path, name: str) -> Path:
    paths = create_run_dir(root, name, root / name)
    w = StoreWriter(paths, {})
    w.write([_batch(0, 100.0, 2), _batch(1, 100.5, 2), _batch(0, 104.0, 1, gpu=False)])
    w.close()
    return paths.root


def test_export_system_writes_every_ranks_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _machine_run(tmp_path / "runs", "gpus")
    out = tmp_path / "system.csv"
    assert main(["export", str(run), "--system", "-o", str(out)]) == 0
    assert "5 rows written" in capsys.readouterr().err
    text = out.read_text()
    header = text.splitlines()[0].split(",")
    assert header[:6] == ["run", "rank", "time", "step", "cpu_percent", "rss_bytes"]
    gpu = ["gpu0/util_percent", "gpu0/mem_used_bytes", "gpu1/util_percent", "gpu1/mem_used_bytes"]
    assert header[6:] == gpu
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["rank"], r["time"]) for r in rows] == [
        ("0", "100.0"),
        ("0", "102.0"),
        ("0", "104.0"),
        ("1", "100.5"),
        ("1", "102.5"),
    ]
    assert rows[0]["gpu0/util_percent"] == "90.0" and rows[0]["gpu1/util_percent"] == ""
    assert rows[2]["gpu0/util_percent"] == ""  # that sample had no GPU reading
    assert rows[1]["step"] == "10"
    # JSON lines, with a run column for several runs
    other = _machine_run(tmp_path / "runs", "other")
    assert main(["export", str(run), str(other), "--system", "--format", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 10 and {x["run"] for x in lines} == {run.name, other.name}
    assert lines[3]["rank"] == 1 and lines[3]["gpu1/util_percent"] == 40.0
    assert lines[2]["gpu0/util_percent"] is None


def test_export_system_of_a_run_without_samples_is_a_header_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = create_run_dir(tmp_path, "run")
    StoreWriter(paths, {}).close()
    assert main(["export", str(paths.root), "--system"]) == 0
    assert capsys.readouterr().out.splitlines() == ["run,rank,time,step"]


def test_export_system_of_a_damaged_batch_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _machine_run(tmp_path / "runs", "bad")
    conn = sqlite3.connect(run / "store.sqlite")
    conn.execute("UPDATE system SET data = x'00ff' WHERE id = 2")
    conn.commit()
    conn.close()
    out = tmp_path / "out.csv"
    assert main(["export", str(run), "--system", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not hold" in err[0]
    assert not out.exists() or out.read_text() == ""


def test_status_shows_the_machine_of_a_running_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from optitui.store.records import MetaUpdate, StatusUpdate

    paths = create_run_dir(tmp_path, "run")
    w = StoreWriter(paths, {"host": "gpu-node-3", "device": "cuda:0"})
    sample = {
        "time": 1.0,
        "step": 40.0,
        "cpu_percent": 101.2,
        "rss_bytes": 3.5 * 2**30,
        "host_mem_used_bytes": 2.0 * 2**30,
        "host_mem_total_bytes": 16.0 * 2**30,
        "gpu0/util_percent": 97.0,
        "gpu0/mem_used_bytes": 31.2 * 2**30,
        "gpu0/mem_total_bytes": 80.0 * 2**30,
        "gpu0/temp_c": 64.0,
        "gpu0/power_w": 310.4,
        "gpu0/junk": float("nan"),
    }
    w.write([StatusUpdate("running", 40, 0), MetaUpdate({"system": {**sample, "rank": 0}})])
    assert main(["status", str(paths.root)]) == 0
    text = capsys.readouterr().out
    want = "GPU0 97% 31.2/80.0 GiB 64°C 310 W · CPU 101% RSS 3.5 GiB · host 2.0/16.0 GiB"
    assert f"machine     {want}" in text
    assert main(["status", str(paths.root), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["machine"]
    assert got["gpu0/util_percent"] == 97.0 and "gpu0/junk" not in got
    w.write([StatusUpdate("finished", 40, 0)])  # an ended run's last sample is not "now"
    assert main(["status", str(paths.root)]) == 0
    assert "\nmachine " not in capsys.readouterr().out
    w.close()
