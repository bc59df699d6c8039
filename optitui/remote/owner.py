"""What a server touches: only this user's own, private runs; and the ledger that makes
a command repeated by a reconnecting client land in the inbox once."""

from __future__ import annotations

import os
import stat

from optitui.store.layout import RunPaths, own_problem

#: the ledger's name in the run directory: ids of commands a server has delivered
LEDGER = "remote-sent"


def private_problem(paths: RunPaths) -> str | None:
    """Why a server must not serve this run, or None when it belongs to this user alone."""
    try:
        root = paths.root.resolve()  # a run named through a symlinked root is still served
    except OSError as exc:
        return f"{paths.root}: {exc.strerror or exc}"
    problem = own_problem(root, folders=False)
    if problem is not None:
        return f"{paths.root} {problem}"
    try:
        if paths.elsewhere() is not None:
            return None  # the directory is ours; its store is on the writer's host
        st = os.lstat(paths.db)
    except OSError as exc:
        return f"{paths.root}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"{paths.db} is not a regular file"
    if st.st_uid != os.geteuid():
        return f"{paths.db} is owned by uid {st.st_uid}, not by this user"
    return None


class Ledger:
    """Append-only list of delivered command ids (one per line, in the run directory)."""

    def __init__(self, paths: RunPaths) -> None:
        self.path = paths.root / LEDGER

    def has(self, command_id: str) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return False
        with os.fdopen(fd, "rb") as f:
            return command_id.encode() in f.read().split(b"\n")

    def add(self, command_id: str) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        fd = os.open(self.path, flags, 0o600)
        try:
            os.write(fd, command_id.encode() + b"\n")  # one short append: atomic
        finally:
            os.close(fd)
