"""The job's side of the inbox: command files read once, checked, answered once.

Only regular files owned by the run's user, in a run directory private to that user,
are read; anything else is refused once and left in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

from optitui.store.commands import (
    ID_RE,
    KINDS,
    MAX_COMMAND_BYTES,
    Command,
    CommandError,
    Rejected,
    json_float,
    json_int,
    parse,
)
from optitui.store.layout import RunPaths


def loose_permissions(path: Path) -> str | None:
    """Why a run directory is not private to its owner, or None when it is."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a folder (a symlink?)"
    if st.st_uid != os.geteuid():
        return f"{path} is owned by uid {st.st_uid}, not by this user"
    if st.st_mode & 0o022:
        return f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


class Inbox:
    """The job's side of the inbox: takes command files, answers every entry once.

    Only regular files owned by the run's user are commands; they are read
    (``O_NOFOLLOW``, never past the size limit), parsed and removed. Anything
    else named ``*.json`` (a folder, FIFO, symlink, socket, another user's file,
    or any file while the run directory is open to other users) is refused
    once and then ignored: it is never opened and never removed. Every command
    id is answered at most once; a reused id is refused under a fresh one, so
    the history of the first is never rewritten.
    """

    def __init__(self, paths: RunPaths) -> None:
        self.paths = paths
        self._ignored: set[tuple[bytes, int]] = set()
        self._answered: set[str] = set()

    def take(self) -> list[Command | Rejected]:
        """Read and remove every command file in the inbox, oldest first."""
        folder = os.fsencode(self.paths.inbox)
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(b".json"))
        except FileNotFoundError:
            return []
        if not names:
            return []
        loose = loose_permissions(self.paths.root) or loose_permissions(self.paths.inbox)
        out: list[Command | Rejected] = []
        for name in names:
            item = self._one(folder, name, loose)
            if item is not None:
                out.append(self._unique(item))
        return out

    def _one(self, folder: bytes, name: bytes, loose: str | None) -> Command | Rejected | None:
        path = os.path.join(folder, name)
        shown = printable(name.decode("utf-8", "backslashreplace"))
        stem = shown[: -len(".json")]
        fid = stem if ID_RE.match(stem) else f"bad-{os.urandom(8).hex()}"
        try:
            st = os.lstat(path)
        except OSError:
            return None  # gone already
        key = (name, st.st_ino)
        if key in self._ignored:
            return None
        raw = b""
        try:
            why = _refusal(st, loose)
            if why is not None:
                self._ignored.add(key)  # answered once; never opened, never removed
                return Rejected(fid, "?", shown, why)
            try:
                raw = _read_command(path, st)
            finally:
                _remove_if_same(path, st)
            return parse(raw, fid)
        except CommandError as exc:
            return Rejected(fid, _kind_hint(raw), shown, str(exc))
        except OSError as exc:
            return Rejected(fid, "?", shown, f"cannot read command: {exc.strerror or exc}")
        except Exception as exc:  # one refusal per bad file, whatever it held
            return Rejected(fid, "?", shown, f"cannot read command: {type(exc).__name__}: {exc}")

    def _unique(self, item: Command | Rejected) -> Command | Rejected:
        if item.id in self._answered:
            fresh = f"dup-{os.urandom(8).hex()}"
            self._answered.add(fresh)
            return Rejected(
                fresh,
                item.kind,
                item.raw if isinstance(item, Command) else item.payload,
                f"command id {item.id!r} was used before; every command needs a new id",
            )
        self._answered.add(item.id)
        return item


def printable(text: str) -> str:
    """``text`` with control characters escaped, so that it can be shown on a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _refusal(st: os.stat_result, loose: str | None) -> str | None:
    """Why an inbox entry is not a command file we may read, or None."""
    if not stat.S_ISREG(st.st_mode):
        return f"refused: {_file_kind(st.st_mode)}, not a regular file (left in place)"
    if st.st_uid != os.geteuid():
        return f"refused: file owned by uid {st.st_uid}, not the run's user (left in place)"
    if loose:
        return f"refused: {loose} (left in place)"
    return None


def _file_kind(mode: int) -> str:
    for test, what in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return what
    return "not a file"


def _read_command(path: bytes, st: os.stat_result) -> bytes:
    if st.st_size > MAX_COMMAND_BYTES:  # sparse or huge: never read
        raise CommandError(f"command is {st.st_size} bytes; the limit is {MAX_COMMAND_BYTES}")
    # O_NOFOLLOW | O_NONBLOCK: a symlink or FIFO swapped in after lstat cannot block us
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or now.st_ino != st.st_ino:
            raise CommandError("refused: the file changed while it was read")
        return os.read(fd, MAX_COMMAND_BYTES + 1)
    finally:
        os.close(fd)


def _remove_if_same(path: bytes, st: os.stat_result) -> None:
    """Remove a command file that was read, unless something else took its name."""
    with contextlib.suppress(OSError):
        now = os.lstat(path)
        if stat.S_ISREG(now.st_mode) and now.st_ino == st.st_ino:
            os.unlink(path)


def take_inbox(paths: RunPaths) -> list[Command | Rejected]:
    """One look at the inbox (see :class:`Inbox`; a job keeps one Inbox for its life)."""
    return Inbox(paths).take()


def _kind_hint(raw: bytes) -> str:
    """The command's kind for the outcome row, when the file says one we know."""
    try:
        obj = json.loads(raw, parse_int=json_int, parse_float=json_float)
        kind = obj.get("kind") if isinstance(obj, dict) else None
        return kind if isinstance(kind, str) and kind in KINDS else "?"
    except Exception:
        return "?"
