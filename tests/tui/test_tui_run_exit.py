"""`optitui run SCRIPT` (the dashboard on a job of its own, or `--inline`) exits as the run
ended once its dashboard closes: 1 when training failed or the job died, as a headless
run does, 0 when it finished or was stopped, and 0 on detach. The dashboard itself is
stood in for: these tests are about what the command returns after it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tui_support import write_fixed_store

import optitui.launch
import optitui.trainer.entry.headless
from optitui.cli import main
from optitui.cli import run as run_cli
from optitui.launch import Launched
from optitui.tui.app import DashboardApp


class Exited:
    """The job process, already gone (or still running: ``code`` None)."""

    pid = 4242

    def __init__(self, code: int | None) -> None:
        self.code = code

    def poll(self) -> int | None:
        return self.code

    def wait(self, timeout: float | None = None) -> int | None:
        return self.code


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(run_cli, "has_terminal", lambda: True)
    monkeypatch.setattr(DashboardApp, "run", lambda self, *a, **k: None)  # closed at once
    path = tmp_path / "train.py"
    path.write_text("def setup(device):\n    raise RuntimeError('not called')\n")
    return path


@pytest.mark.parametrize(
    ("state", "code", "status", "said"),
    [
        ("failed", 1, 1, "training failed at step 600 (run failed)"),
        ("crashed", -9, 1, "training died at step 600"),
        ("finished", 0, 0, "training finished at step 600"),
        ("stopped", 0, 0, "training stopped at step 600"),
        ("running", None, 0, "detached; the job trains on"),
    ],
)
def test_run_exits_as_its_job_ended(
    tmp_path: Path,
    script: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    state: str,
    code: int | None,
    status: int,
    said: str,
) -> None:
    paths, _ = write_fixed_store(tmp_path / "run", state=state)

    def start_job(opts: Any, **_: Any) -> Launched:
        return Launched(paths, Exited(code))  # type: ignore[arg-type]

    monkeypatch.setattr(optitui.launch, "start_job", start_job)
    assert main(["run", str(script), "--device", "cpu"]) == status
    assert said in capsys.readouterr().out


@pytest.mark.parametrize(("state", "status"), [("failed", 1), ("finished", 0)])
def test_run_inline_exits_as_its_training_ended(
    tmp_path: Path, script: Path, monkeypatch: pytest.MonkeyPatch, state: str, status: int
) -> None:
    paths, _ = write_fixed_store(tmp_path / "run", state=state)
    trainer = SimpleNamespace(paths=paths, run=lambda: None, request_stop=lambda _why: None)
    monkeypatch.setattr(optitui.trainer.entry.headless, "prepare", lambda _opts: trainer)
    assert main(["run", str(script), "--inline", "--device", "cpu"]) == status


def test_a_run_whose_store_is_gone_exits_1(tmp_path: Path) -> None:
    line, status = run_cli.how_it_ended(tmp_path / "nowhere")
    assert status == 1 and "cannot be read" in line
