"""Where things live inside a run directory, and how run directories are found."""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from optitui.store import placement
from optitui.store.placement import DB_NAME, Where

__all__ = ["DB_NAME", "RunPaths", "create_run_dir", "find_runs", "latest_running_run"]

INBOX = "inbox"
OUTPUT = "output.log"
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class RunPaths:
    """The files of one run directory."""

    root: Path

    @property
    def db(self) -> Path:
        """The store file as this host opens it: in the run directory, or on this node's
        disk when the run directory is on a network filesystem (see placement.py)."""
        return placement.resolve(self.root)

    @property
    def inbox(self) -> Path:
        return self.root / INBOX

    @property
    def output(self) -> Path:
        return self.root / OUTPUT

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    def exists(self) -> bool:
        return (self.root / DB_NAME).is_file() or (self.root / placement.POINTER).is_file()

    def elsewhere(self) -> Where | None:
        """Where the store is when it is on another host's disk (only a viewer there may
        open it), else None."""
        return placement.elsewhere(self.root)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "run"


def new_run_path(root: Path | str, name: str) -> Path:
    """A fresh run directory's path, ``root/<name>-<time>-<rand>`` (not made yet)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{_slug(name)}-{stamp}-{secrets.token_hex(2)}"


def create_run_dir(root: Path | str, name: str, run_dir: Path | str | None = None) -> RunPaths:
    """Make a fresh run directory (mode 0700: commands are only taken from its owner).

    With ``run_dir`` given, that exact directory is used (created if missing, and
    it must not already hold a run); otherwise ``root/<name>-<time>-<rand>``.
    """
    path = Path(run_dir) if run_dir is not None else new_run_path(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    paths = RunPaths(path)
    if paths.exists():
        raise FileExistsError(f"{path} already holds a run; choose another --run-dir")
    paths.inbox.mkdir(mode=0o700, exist_ok=True)
    paths.checkpoints.mkdir(mode=0o700, exist_ok=True)
    placement.place(path)  # on a network filesystem the store goes to this node's disk
    return paths


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # a store on another host's disk
        return 0.0


def find_runs(root: Path | str) -> list[RunPaths]:
    """Every run directory directly under ``root``, oldest first by creation time."""
    base = Path(root)
    if not base.is_dir():
        return []
    runs = [RunPaths(p) for p in base.iterdir() if RunPaths(p).exists()]
    runs.sort(key=lambda r: _mtime(r.db))
    runs.sort(key=lambda r: r.root.stat().st_ctime)
    return runs


def latest_running_run(root: Path | str) -> RunPaths | None:
    """The most recently started run under ``root`` whose job is alive, if any."""
    from optitui.store.reader import RunReader

    for paths in reversed(find_runs(root)):
        try:
            with RunReader(paths.root) as reader:
                if reader.status().alive:
                    return paths
        except Exception:  # a damaged store is not a candidate
            continue
    return None
