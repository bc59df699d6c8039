"""The job needs no terminal and opens no network port."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import start_headless, wait_for


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _inet_inodes() -> set[str]:
    found = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        found |= {line.split()[9] for line in lines if len(line.split()) > 9}
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_no_network_socket_and_sighup_is_ignored(tmp_path: Path, tiny_script: Path) -> None:
    run_dir = tmp_path / "run"
    proc, reader = start_headless(tiny_script, run_dir, min_step=21)
    try:
        # no TCP or UDP socket at all (unix sockets would be fine; there are none either)
        assert not (_socket_inodes(proc.pid) & _inet_inodes())
        # the terminal going away: SIGHUP changes nothing
        step = reader.status().step
        os.kill(proc.pid, signal.SIGHUP)
        wait_for(lambda: reader.status().step > step + 50, 30, "training after SIGHUP")
        assert proc.poll() is None and reader.status().state == "running"
        steps = list(reader.read_metrics().columns["step"])
        assert steps == [float(s) for s in range(1, len(steps) + 1)]  # no step lost
    finally:
        proc.terminate()
        proc.wait(30)
