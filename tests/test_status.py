"""`optitui status RUN [--json]` on a live, a finished and a failed run, and on runs it
cannot read."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import Running, wait_for
from jobs import make_trainer, tiny_job

from optitui.cli import main
from optitui.console.fmt import SPARKS
from optitui.store.client import send
from optitui.store.records import MetricBatch, StatusUpdate
from optitui.store.writer import StoreWriter


def status(capsys: pytest.CaptureFixture[str], run: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["status", str(run), *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def as_json(text: str) -> dict[str, Any]:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    return dict(json.loads(text, parse_constant=refuse))


def test_status_of_a_live_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], run_in_thread: Any
) -> None:
    t = make_trainer(tmp_path, tiny_job(val_data=None), max_steps=1_000_000)
    running: Running = run_in_thread(t)
    wait_for(lambda: t.step >= 100, what="100 steps")
    assert send(t.paths, "scale-lr", {"factor": 0.5, "group": 1}).outcome is not None
    assert send(t.paths, "save", {}).outcome is not None
    wait_for(lambda: list(t.paths.checkpoints.glob("*.json")), what="a checkpoint")
    code, out, _ = status(capsys, t.paths.root, "--json")
    assert code == 0
    s = as_json(out)
    assert s["state"] == "running" and s["step"] >= 64 and s["max_steps"] == 1_000_000
    assert s["steps_per_s"] > 0 and s["eta_s"] > 0
    assert math.isfinite(s["loss"]["now"]) and math.isfinite(s["loss"]["smoothed"])
    assert len(s["trend"]["values"]) == 40 and s["trend"]["first_step"] == 1
    assert [g["name"] for g in s["groups"]] == ["body", "head"]
    assert s["groups"][1]["values"]["lr"] == pytest.approx(0.005)  # the command's effect
    assert "momentum" in s["groups"][0]["values"]
    assert any("scale-lr" in c["message"] and "applied" in c["message"] for c in s["commands"])
    assert s["checkpoints"][-1]["reason"] == "manual"
    code, text, _ = status(capsys, t.paths.root)
    running.stop()
    assert code == 0
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "running" in lines["state"] and "ETA" in lines["state"] and "steps/s" in lines["state"]
    assert "now" in lines["loss"] and "smoothed" in lines["loss"]
    assert any(c in lines["trend"] for c in SPARKS)
    assert "body  lr=0.01 momentum=0 " in lines["groups"]
    assert "head" in text and "lr=0.005" in text
    assert "scale-lr" in lines["commands"] and "manual" in lines["checkpoints"]
    assert "\x1b" not in text  # not a terminal: no colour


def test_status_of_a_finished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = tiny_job(val_data=None, checkpoint_every=20)
    t = make_trainer(tmp_path, job, max_steps=60)
    assert t.run() == "finished"
    code, out, _ = status(capsys, t.paths.root, "--json")
    s = as_json(out)
    assert code == 0 and s["state"] == "finished" and s["step"] == 60
    assert s["eta_s"] is None and s["message"] == "60 steps done"
    assert [c["step"] for c in s["checkpoints"]] == [20, 40, 60]
    assert s["commands"] == [] and s["warnings"] == []
    code, text, _ = status(capsys, t.paths.root, "--root", str(tmp_path))
    assert "finished  step 60 of 60 (100%)" in text and "ETA" not in text
    assert "commands    none" in text and "warnings    none" in text


def test_status_of_a_failed_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calls = {"n": 0}

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 25:
            raise RuntimeError("the data loader fell over")
        return torch.nn.functional.mse_loss(out, y)

    job = tiny_job(val_data=None)
    job.loss_fn = loss_fn
    t = make_trainer(tmp_path, job)
    with pytest.raises(RuntimeError):
        t.run()
    code, out, _ = status(capsys, t.paths.root, "--json")
    s = as_json(out)
    assert code == 0 and s["state"] == "failed" and s["step"] == 25
    assert "the data loader fell over" in s["message"]
    assert s["warnings"][-1]["kind"] == "error"
    assert "the data loader fell over" in s["warnings"][-1]["message"]
    assert s["checkpoints"][-1]["reason"] == "failure"
    code, text, _ = status(capsys, t.paths.root)
    state = next(line for line in text.splitlines() if line.startswith("state"))
    assert "failed" in state and "the data loader fell over" in state
    assert "error" in next(line for line in text.splitlines() if line.startswith("warnings"))


def test_non_finite_losses_stay_valid_json_and_zero_code_shows_no_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from optitui.store.layout import create_run_dir

    paths = create_run_dir(tmp_path, "nan", tmp_path / "nan")
    w = StoreWriter(paths, {"max_steps": None, "probe": {"mode": "zero-code", "limits": []}})
    w.write(
        [
            MetricBatch({"step": [1.0, 2.0], "time": [1.0, 2.0], "loss": [0.5, math.nan]}),
            StatusUpdate("paused", 2, 0, message="loss is nan at step 2; training paused"),
        ]
    )
    w.close()
    code, out, _ = status(capsys, paths.root, "--json")
    s = as_json(out)
    assert code == 0 and s["loss"]["now"] == "nan" and s["loss"]["smoothed"] == 0.5
    assert s["epoch"] is None  # zero-code mode sees no epochs: none is shown
    assert s["steps_per_s"] is None  # paused: the steps before the pause are not its pace
    code, text, _ = status(capsys, paths.root)
    assert "epoch" not in text and "loss is nan at step 2" in text
    assert "steps/s" not in text


def test_a_missing_or_damaged_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = status(capsys, tmp_path / "nothing")
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "not a run" in err
    assert "no such folder" in err
    a_file = tmp_path / "passwd"
    a_file.write_text("root:x:0:0::/root:/bin/sh\n")
    code, out, err = status(capsys, a_file)
    assert code == 2 and out == "" and err.strip().endswith("is a file, not a folder)"), err
    code, out, err = main(["status", "passwd", "--root", str(tmp_path)]), *capsys.readouterr()
    assert code == 2 and err.strip().endswith(f"({a_file} is a file, not a folder)"), err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "store.sqlite").write_bytes(b"this is not a database" * 64)
    code, out, err = status(capsys, bad)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "cannot be read" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    sqlite3.connect(str(empty / "store.sqlite")).close()  # a database, but not ours
    code, out, err = status(capsys, empty)
    assert code == 2 and out == "" and len(err.splitlines()) == 1


def test_status_of_a_run_on_another_host(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`optitui status HOST:RUN` runs `optitui status` there, where the store is local
    (tests/local_ssh.py stands in for ssh and runs it on this host)."""
    import sys

    from conftest import REPO

    monkeypatch.setenv("OPTITUI_SSH", f"{sys.executable} {REPO / 'tests' / 'local_ssh.py'}")
    monkeypatch.setenv("OPTITUI_REMOTE", f"env PYTHONPATH={REPO} {sys.executable} -m optitui")
    t = make_trainer(tmp_path, tiny_job(val_data=None), max_steps=30)
    assert t.run() == "finished"
    assert main(["status", f"gpu-node-17:{t.paths.root}", "--json"]) == 0
    s = as_json(capfd.readouterr().out)
    assert s["state"] == "finished" and s["step"] == 30 and s["run"] == str(t.paths.root)
    assert main(["status", f"gpu-node-17:{tmp_path / 'gone'}"]) == 2
    out = capfd.readouterr()
    assert out.out == "" and len(out.err.splitlines()) == 1 and "not a run" in out.err
    assert main(["status", "gpu-node-17:"]) == 2
    assert "name the run" in capfd.readouterr().err
