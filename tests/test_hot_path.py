"""The hot path: no per-step host-device sync, and Ctrl+C stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import wait_for
from jobs import make_trainer, tiny_job

from optitui.store.reader import RunReader


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
