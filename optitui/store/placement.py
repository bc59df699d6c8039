"""Where the store of a run directory on a network filesystem lives: on the writer's disk.

SQLite is safe there only in one host's hands (see :mod:`optitui.store.netfs`),
so while the job runs its store is a file on its own node's local disk, and the
run directory holds a pointer, ``store.where``: the host and the path. Viewers
on that host follow the pointer; a viewer on any other host is told where the
run is and to ``optitui attach HOST:RUN``, instead of reading a WAL database
through the network. When the job closes its store, the store is copied into
the run directory in rollback-journal mode (a plain file that nothing writes
any more, read with ``immutable=1`` on a network filesystem), the node's copy
goes, and the pointer is renamed ``store.settled`` (where the store was
written). Checkpoints, the inbox and ``output.log`` stay in the run directory
throughout.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from optitui.store import netfs

POINTER = "store.where"
#: the pointer's name once the store is back in the run directory: where it was written
SETTLED = "store.settled"
DB_NAME = "store.sqlite"
#: the node-local folders made for stores start with this (and only those are removed)
PREFIX = "optitui-store-"


@dataclass(frozen=True)
class Where:
    """A store kept on one host's local disk for a run directory on a shared filesystem."""

    host: str
    path: str  # the store file on that host
    fs: str  # the run directory's filesystem


class StoreElsewhere(FileNotFoundError):
    """The run's store is on another host's disk: only a viewer there may open it."""

    def __init__(self, run_dir: Path, where: Where) -> None:
        run = os.path.abspath(run_dir)
        super().__init__(
            f"{run_dir}: the job keeps this run's store on {where.host}'s local disk "
            f"({where.path}), because the run directory is on {where.fs}, where SQLite cannot "
            f"be shared between hosts. Watch it from here with "
            f"`optitui attach {where.host}:{run}` (or run optitui on {where.host})"
        )
        self.where = where


def read_pointer(root: Path) -> Where | None:
    try:
        data = json.loads((root / POINTER).read_text())
        return Where(str(data["host"]), str(data["path"]), str(data.get("fs", "a network fs")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _local_base() -> Path | None:
    """A writable folder on this node's own disk: $OPTITUI_NODE_STORE, /var/tmp or /tmp."""
    wanted = os.environ.get("OPTITUI_NODE_STORE")
    for base in [Path(wanted)] if wanted else [Path("/var/tmp"), Path("/tmp")]:
        if base.is_dir() and os.access(base, os.W_OK) and netfs.network_filesystem(base) is None:
            return base
    return None


def place(root: Path) -> Where | None:
    """For a new run directory on a network filesystem: make the store's folder on this
    node and write the pointer. None (the store stays in the run directory) elsewhere."""
    fs = netfs.network_filesystem(root)
    if fs is None:
        return None
    base = _local_base()
    if base is None:
        print(
            f"optitui: {root} is on {fs} and no local folder is writable for the run store "
            "(set OPTITUI_NODE_STORE); the store stays there: read it from this host only",
            file=sys.stderr,
        )
        return None
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{root.name[:40]}-", dir=base))  # 0700
    where = Where(socket.gethostname(), str(folder / DB_NAME), fs)
    tmp = root / f".{POINTER}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"host": where.host, "path": where.path, "fs": where.fs}, f)
    os.rename(tmp, root / POINTER)
    return where


def resolve(root: Path) -> Path:
    """The store file a process on this host opens for ``root``."""
    here = root / DB_NAME
    if here.exists() or not (root / POINTER).exists():
        return here
    where = read_pointer(root)
    if where is not None and where.host == socket.gethostname():
        return Path(where.path)
    return here


def elsewhere(root: Path) -> Where | None:
    """The pointer, when the store is on another host and not (yet) in the run directory."""
    if (root / DB_NAME).exists():
        return None
    where = read_pointer(root)
    return where if where is not None and where.host != socket.gethostname() else None


def settle(root: Path) -> Path | None:
    """Once the job has closed its store: copy it into the run directory and drop the
    node's copy and the pointer. Returns the store's new path (None: nothing to do)."""
    where = read_pointer(root)
    if where is None or where.host != socket.gethostname() or (root / DB_NAME).exists():
        return None
    src = Path(where.path)
    final = src.with_name(f".{DB_NAME}.final")
    tmp = root / f".{DB_NAME}.{os.getpid()}.tmp"
    try:
        # the copy is made with SQLite on the local disk, so the network filesystem only
        # ever sees plain file writes (no locks), then renamed into place
        with (
            contextlib.closing(sqlite3.connect(src)) as s,
            contextlib.closing(sqlite3.connect(final)) as d,
        ):
            s.backup(d)
            d.execute("PRAGMA journal_mode = DELETE")
        shutil.copyfile(final, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.rename(tmp, root / DB_NAME)
    except (OSError, sqlite3.Error) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        print(
            f"optitui: the run store stays at {src} on {where.host}: "
            f"it could not be copied into {root}: {exc}",
            file=sys.stderr,
        )
        return None
    with contextlib.suppress(OSError):
        os.replace(root / POINTER, root / SETTLED)
    _remove_node_copy(src.parent)
    return root / DB_NAME


def discard(root: Path) -> None:
    """For a run directory no job recorded in: the node's folder and the pointer go."""
    where = read_pointer(root)
    if where is not None and where.host == socket.gethostname():
        _remove_node_copy(Path(where.path).parent)
    with contextlib.suppress(OSError):
        if (root / POINTER).is_file() and not (root / POINTER).is_symlink():
            (root / POINTER).unlink()


def _remove_node_copy(folder: Path) -> None:
    """The node's folder, when it is one of ours: its SQLite files, then itself."""
    if not folder.name.startswith(PREFIX) or folder.is_symlink():
        return
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f".{DB_NAME}.final"):
        path = folder / name
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                path.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()


def settled(root: Path) -> bool:
    """Whether the run directory's store is a finished copy that nothing writes again.

    Told by the file settle() leaves, never by reading the database's header here:
    closing any descriptor of a database drops every POSIX lock this process holds on
    it, so a process that also has SQLite connections to it must leave it to SQLite."""
    return (root / SETTLED).is_file() and (root / DB_NAME).is_file()
