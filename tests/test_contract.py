"""A script that cannot give a Job gets a message naming the file and the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_script

from optitui.trainer.entry.script import ScriptError, load_job

CPU = torch.device("cpu")


def _error(tmp_path: Path, body: str) -> str:
    path = write_script(tmp_path, body)
    with pytest.raises(ScriptError) as info:
        load_job(path, CPU)
    msg = str(info.value)
    assert str(path) in msg or path.name in msg, msg
    return msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="no such file"):
        load_job(tmp_path / "nope.py", CPU)


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    msg = _error(tmp_path, "x = 1\ndef setup(device)\n    pass\n")
    assert "syntax error at line 2" in msg


def test_import_raises(tmp_path: Path) -> None:
    msg = _error(tmp_path, "import math\nraise RuntimeError('no data here')\n")
    assert "failed to import" in msg and "RuntimeError: no data here" in msg
    assert "line 2" in msg


def test_no_setup(tmp_path: Path) -> None:
    assert "defines no setup(device)" in _error(tmp_path, "x = 1\n")


def test_setup_not_callable(tmp_path: Path) -> None:
    assert "setup is a int" in _error(tmp_path, "setup = 3\n")


def test_setup_wrong_arity(tmp_path: Path) -> None:
    assert "setup must take one argument" in _error(tmp_path, "def setup():\n    pass\n")


def test_setup_raises(tmp_path: Path) -> None:
    msg = _error(tmp_path, "def setup(device):\n    raise ValueError('bad path')\n")
    assert "setup(device) raised ValueError: bad path" in msg and "line 2" in msg


def test_setup_returns_wrong_type(tmp_path: Path) -> None:
    msg = _error(tmp_path, "def setup(device):\n    return {'model': 1}\n")
    assert "returned dict; it must return optitui.Job" in msg


def test_exit_during_import(tmp_path: Path) -> None:
    assert "called exit(3)" in _error(tmp_path, "import sys\nsys.exit(3)\n")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("model=1, optimizer=opt, train_data=[], loss_fn=f", "model must be a torch.nn.Module"),
        ("model=m, optimizer=2, train_data=[], loss_fn=f", "optimizer must be a torch.optim"),
        ("model=m, optimizer=opt, train_data=5, loss_fn=f", "train_data must be iterable"),
        ("model=m, optimizer=opt, train_data=[]", "exactly one of loss_fn"),
        ("model=m, optimizer=opt, train_data=[], loss_fn=f, step_fn=f", "exactly one of"),
        ("model=m, optimizer=opt, train_data=[], loss_fn=f, max_steps=0", "max_steps must be"),
        ("model=m, optimizer=opt, train_data=[], loss_fn=f, grad_accum=0", "grad_accum must"),
        ("model=m, optimizer=opt, train_data=[], loss_fn=f, clip_grad_norm=-1", "clip_grad_norm"),
        ("model=m, optimizer=opt, train_data=[], loss_fn=f, scheduler=3", "scheduler must be"),
    ],
)
def test_unusable_job_fields(tmp_path: Path, fields: str, expected: str) -> None:
    body = f"""
import torch, optitui
def setup(device):
    m = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    f = torch.nn.functional.mse_loss
    return optitui.Job({fields})
"""
    msg = _error(tmp_path, body)
    assert "not usable" in msg and expected in msg


def test_cli_reports_without_traceback(tmp_path: Path) -> None:
    path = write_script(tmp_path, "def setup(device):\n    return None\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "optitui",
            "run",
            str(path),
            "--headless",
            "--root",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "returned NoneType; it must return optitui.Job" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_device_is_refused(tmp_path: Path, tiny_script: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "optitui",
            "run",
            str(tiny_script),
            "--headless",
            "--device",
            "tpu",
            "--root",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "expected auto, cpu, cuda, cuda:N or mps" in proc.stderr
