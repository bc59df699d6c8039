"""Shared fixtures: tiny deterministic jobs on the CPU, and a trainer running in a thread."""

from __future__ import annotations

import contextlib
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

TINY_SCRIPT = """
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import optitui

def setup(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1)).to(device)
    opt = torch.optim.SGD([
        {"params": model[0].parameters(), "name": "body"},
        {"params": model[2].parameters(), "name": "head", "lr": 0.01},
    ], lr=0.05, momentum=0.9)
    return optitui.Job(model=model, optimizer=opt,
        train_data=DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=g),
        loss_fn=nn.functional.mse_loss, STEP_DELAY)
"""


#: the states a trainer's own end (``_finish``) leaves it in
_ENDED = ("finished", "stopped", "failed")


@pytest.fixture(autouse=True)
def _end_trainers_left_running(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """End every trainer a test started and left running (``jobs.drive`` steps one by one and
    never ends it). Its threads would otherwise outlive the test: hundreds of store writers
    beating, command pumps polling and samplers waking slow every later test."""
    module = sys.modules.get("optitui.trainer.loop.trainer")
    if module is None:  # nothing that can start a trainer is loaded
        yield
        return
    started: list[Any] = []
    start = module.Trainer._start

    def recording_start(self: Any) -> None:
        started.append(self)
        start(self)

    monkeypatch.setattr(module.Trainer, "_start", recording_start)
    yield
    for trainer in started:
        if getattr(trainer, "state", None) not in _ENDED:
            end_threads(trainer)


def end_threads(trainer: Any) -> None:
    """Stop a trainer's threads without its flush (a half-driven trainer may not read)."""
    stops = [trainer.health.detach, trainer.pump.stop, trainer.machine.stop]
    if trainer.saver is not None:
        stops.append(trainer.saver.close)
    stops.append(trainer.recorder.close)
    for stop in stops:
        with contextlib.suppress(Exception):  # already ended by the test, or broken by it
            stop()


def write_script(tmp_path: Path, body: str, name: str = "train.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def tiny_script(tmp_path: Path) -> Path:
    """A fast two-group SGD regression script (runs forever unless capped)."""
    return write_script(tmp_path, TINY_SCRIPT.replace(", STEP_DELAY", ""))


def corrupt_run(root: Path) -> Path:
    """A run directory whose store is SQLite's header and then garbage."""
    bad = root / "corrupt"
    bad.mkdir(parents=True)
    (bad / "store.sqlite").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    return bad


def set_meta(run_dir: Path, key: str, value: Any) -> None:
    """Rewrite one metadata entry of a closed run's store (another version's, an older one)."""
    import json
    import sqlite3

    with sqlite3.connect(run_dir / "store.sqlite") as db:
        db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )


def from_a_newer_optitui(run_dir: Path) -> Path:
    """Make a closed run read as written by optitui 9.1.0 in store schema 2."""
    set_meta(run_dir, "schema_version", 2)
    set_meta(run_dir, "optitui_version", "9.1.0")
    return run_dir


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Running:
    """A Trainer running in a background thread, for tests that send it commands."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.result: str | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.trainer.run()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.trainer.request_stop("test over")
        self.thread.join(30)


@pytest.fixture
def run_in_thread() -> Iterator[Callable[[Any], Running]]:
    started: list[Running] = []

    def start(trainer: Any) -> Running:
        r = Running(trainer)
        started.append(r)
        return r

    yield start
    for r in started:
        if r.thread.is_alive():
            r.stop()


def start_headless(script: Path, run_dir: Path, min_step: int = 1) -> tuple[Any, Any]:
    """`optitui run SCRIPT --headless` in a subprocess, once it has trained ``min_step``
    steps: returns (process, reader). The caller ends the process."""
    import subprocess
    import sys

    from optitui.store.reader import RunReader

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optitui",
            "run",
            str(script),
            "--headless",
            "--run-dir",
            str(run_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (run_dir / "store.sqlite").exists(), 60, "store")
        reader = RunReader(run_dir)
        wait_for(lambda: reader.status().step >= min_step, 60, "training")
    except BaseException:
        proc.kill()
        raise
    return proc, reader


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A private sshd on 127.0.0.1 (tests/sshd.py); skipped, with the reason, where none can
    run."""
    from sshd import start

    got = start(tmp_path_factory.mktemp("sshd"))
    if isinstance(got, str):
        pytest.skip(f"no test sshd: {got}")
    yield got
    got.stop()


@pytest.fixture
def over_ssh(sshd: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """optitui's ssh reaches the test sshd as host `optitui-test`, and runs this checkout."""
    for name, value in sshd.env().items():
        monkeypatch.setenv(name, value)
    return sshd


@pytest.fixture
def zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Zero-code mode's hooks installed in this process, its run under tmp_path/zc."""
    from optitui.trainer.entry.script_mode import ZeroCode
    from optitui.trainer.probe.watch import ENV_RUN_DIR

    monkeypatch.setenv(ENV_RUN_DIR, str(tmp_path / "zc"))
    z = ZeroCode()
    z.install()
    try:
        yield z
    finally:
        z.uninstall()
        if z.probe is not None:
            z.probe.close()


#: the Tensor methods that read a value back to the host (a sync on an accelerator)
SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


@pytest.fixture
def sync_counter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Counts calls, made from optitui's own code, of Tensor methods that read a value
    back to the host: the tests' stand-in for CUDA syncs. The DataLoader's own sampler
    calls are the user's, and are the same with or without optitui.

    Flushes take the path they take on a device, stacking the user's metrics and reading
    them with the losses: on the CPU they are read one by one instead, with no device to
    wait for (:data:`~optitui.trainer.loop.user_metrics.READ_ONE_BY_ONE`)."""
    import torch  # here, not at the top: the dashboard's tests never import torch

    import optitui
    from optitui.trainer.loop import user_metrics

    package = str(Path(optitui.__file__).parent)
    monkeypatch.setattr(user_metrics, "READ_ONE_BY_ONE", frozenset())
    counts: Counter[str] = Counter()
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def wrapper(
            self: torch.Tensor,
            *a: Any,
            __n: str = name,
            __f: Callable[..., Any] = original,
            **k: Any,
        ) -> Any:
            if sys._getframe(1).f_code.co_filename.startswith(package):
                counts[__n] += 1
            return __f(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    yield counts


@pytest.fixture
def snap_compare(snap_compare: Callable[..., bool]) -> Callable[..., bool]:
    """pytest-textual-snapshot's ``snap_compare``, with the keys pressed and the key bar
    settled before the picture is taken: a key that changes the screen's keys has the
    bar rebuilt after the next refresh, and a picture taken before that shows it empty."""
    import inspect

    from tui_support import keys_settled  # (tests/tui, where every snapshot test is)

    def compare(
        app: Any,
        press: Iterable[str] = (),
        terminal_size: tuple[int, int] = (80, 24),
        run_before: Callable[[Any], Awaitable[None] | None] | None = None,
    ) -> bool:
        async def settled(pilot: Any) -> None:
            if run_before is not None:
                result = run_before(pilot)
                if inspect.isawaitable(result):
                    await result
            await pilot.press(*press)
            await keys_settled(pilot)

        return snap_compare(app, terminal_size=terminal_size, run_before=settled)

    return compare
