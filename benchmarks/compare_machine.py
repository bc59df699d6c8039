"""What the comparison records of the machine, and a program drawn in a real terminal
(a tmux pane of a fixed size)."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from compare_loops import REPO, SIZE


# ------------------------------------------------------------------------------------------
# machine facts
# ------------------------------------------------------------------------------------------
def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def version_of(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def git_revision(repo: Path = REPO) -> str:
    """The commit measured, with "+ uncommitted changes" when the tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "optitui"],
            cwd=repo,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + (" + uncommitted changes under optitui/" if dirty else "")


def proc_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


# ------------------------------------------------------------------------------------------
# a program in a real terminal: a tmux pane of a fixed size
# ------------------------------------------------------------------------------------------
class Tmux:
    def __init__(self, command: str, size: tuple[int, int] = SIZE) -> None:
        self._dir = tempfile.mkdtemp(prefix="optitui-bench-tmux-")
        self.sock = str(Path(self._dir) / "sock")
        self.command = command
        self.size = size
        self.pane_pid = 0
        self.server_pid = 0

    def tmux(self, *args: str) -> str:
        res = subprocess.run(
            ["tmux", "-f", "/dev/null", "-S", self.sock, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        return res.stdout

    def start(self) -> None:
        w, h = self.size
        self.tmux(
            "new-session",
            "-d",
            "-s",
            "b",
            "-x",
            str(w),
            "-y",
            str(h),
            "-c",
            str(REPO),
            self.command,
        )
        pids = self.tmux("display-message", "-p", "-t", "b", "#{pane_pid} #{pid}").split()
        self.pane_pid, self.server_pid = int(pids[0]), int(pids[1])

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "b")

    def wait_for(self, ok: Callable[[str], bool], timeout: float, poll: float = 0.01) -> bool:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if ok(self.screen()):
                return True
            time.sleep(poll)
        return False

    def close(self) -> None:
        self.tmux("kill-server")
        shutil.rmtree(self._dir, ignore_errors=True)


def optitui_command(*args: str) -> str:
    """A shell command line running ``python -m optitui ARGS`` as the pane's process."""
    quoted = " ".join(f"'{a}'" for a in args)
    return f"exec env -u COLUMNS -u LINES OMP_NUM_THREADS=1 {sys.executable} -m optitui {quoted}"


def axis_end(steps: int) -> str:
    """How the plots' x axis labels the last step (1k, 10k, 1M)."""
    if steps >= 1_000_000:
        return f"{steps / 1e6:.3g}M"
    if steps >= 1000:
        return f"{steps / 1e3:.3g}k"
    return str(steps)


def shows_all(steps: int) -> Callable[[str], bool]:
    """The status bar has the last step and both plots' x axes end there."""
    return lambda s: f"step {steps:,}" in s and s.count(axis_end(steps)) >= 2
