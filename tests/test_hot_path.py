"""The hot path: no per-step host-device sync, and Ctrl+C stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import wait_for
from jobs import make_trainer, tiny_job

import optitui
from optitui.store.reader import RunReader

SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


PACKAGE = str(Path(optitui.__file__).parent)


@pytest.fixture
def sync_counter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Counts calls, made from optitui's own code, of Tensor methods that read a value
    back to the host (a host-device sync on an accelerator). The DataLoader's own
    sampler calls are the user's, and are the same with or without optitui."""
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
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(PACKAGE):
                counts[__n] += 1
            return __f(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    yield counts


@pytest.mark.parametrize("clip", [None, 1.0])
def test_syncs_per_step(tmp_path: Path, sync_counter: Counter[str], clip: float | None) -> None:
    steps, every = 1000, 100
    trainer = make_trainer(
        tmp_path,
        tiny_job(max_steps=steps, clip_grad_norm=clip),
        flush_every=every,
        flush_seconds=1e9,
    )
    assert trainer.run() == "finished" and trainer.step == steps
    # exactly one batched read per flush (the losses, and the grad norms when clipping,
    # together), nothing per step
    assert sync_counter == Counter({"tolist": steps // every})
    with RunReader(trainer.paths.root) as r:
        assert r.read_metrics().length == steps


def test_ctrl_c_stops_after_the_step_and_flushes(tmp_path: Path, tiny_script: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optitui",
            "run",
            str(tiny_script),
            "--headless",
            "--run-dir",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (run_dir / "store.sqlite").exists(), 60, "store")
        reader = RunReader(run_dir)
        wait_for(lambda: reader.status().step > 50, 60, "steps")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped at step" in err and "Traceback" not in err
    st = reader.status()
    assert st.state == "stopped" and st.message == "interrupted"
    assert reader.read_metrics().length == st.step  # every step flushed
