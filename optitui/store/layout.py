"""Where things live inside a run directory, and how run directories are found."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from optitui.store import placement
from optitui.store.placement import DB_NAME, Where

__all__ = [
    "DB_NAME",
    "RunDirError",
    "RunPaths",
    "create_run_dir",
    "find_runs",
]

INBOX = "inbox"
OUTPUT = "output.log"
CHECKPOINTS = "checkpoints"
#: made with the run directory: only a directory with it can take a job (see create_run_dir)
MARKER = ".optitui-run"
#: held (flock) by the job for its whole life
LOCK = "job.lock"


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


class RunDirError(Exception):
    """A run directory that optitui will not use (or cannot make); the message says why."""


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "run"


def new_run_path(root: Path | str, name: str) -> Path:
    """A fresh run directory's path, ``root/<name>-<time>-<rand>`` (not made yet; 64
    random bits, so that nobody can guess a run's name before it exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # os.urandom, as secrets.token_hex: secrets would load hashlib (OpenSSL) into every
    # viewer that imports the store
    return Path(root) / f"{_slug(name)}-{stamp}-{os.urandom(8).hex()}"


def create_run_dir(root: Path | str, name: str, run_dir: Path | str | None = None) -> RunPaths:
    """Make a fresh run directory (mode 0700: commands are only taken from its owner).

    optitui makes it itself, with a ``mkdir`` that fails when the path exists. With
    ``run_dir`` given, that exact path is made; an existing one is used only when it is
    one optitui made for this job and nothing has run in it yet (``optitui run`` makes
    it before it starts the job's process): ours, 0700, no symlinks, our marker file,
    no store. Anything else is refused with RunDirError.
    """
    if run_dir is None:
        base = Path(root)
        _mkdirs(base)
        for _ in range(8):
            path = new_run_path(base, name)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            except OSError as exc:
                raise RunDirError(f"cannot create a run directory in {base}: {_why(exc)}") from None
            break
        else:  # pragma: no cover - 64 random bits
            raise RunDirError(f"cannot find a free run directory name in {base}")
    else:
        path = Path(run_dir)
        _mkdirs(path.parent)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            why = fresh_problem(path)
            if why is not None:
                raise RunDirError(f"{path}: {why}; choose another --run-dir") from None
            return RunPaths(path)
        except OSError as exc:
            raise RunDirError(f"cannot create the run directory {path}: {_why(exc)}") from None
    try:
        os.chmod(path, 0o700)  # whatever the umask
        for sub in (INBOX, CHECKPOINTS):
            os.mkdir(path / sub, 0o700)
        fd = os.open(path / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        placement.place(path)  # on a network filesystem the store goes to this node's disk
    except OSError as exc:
        raise RunDirError(f"cannot set up the run directory {path}: {_why(exc)}") from None
    return RunPaths(path)


def _mkdirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunDirError(f"{path} exists and is not a folder") from None
    except OSError as exc:
        raise RunDirError(f"cannot create {path}: {_why(exc)}") from None


def _why(exc: OSError) -> str:
    """An OSError as a person reads it: what went wrong, and the errno's words."""
    if exc.errno == errno.EROFS:
        return "read-only filesystem"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    return exc.strerror or str(exc)


def own_problem(path: Path, *, folders: bool = True) -> str | None:
    """Why ``path`` is not a run directory private to this user, or None.

    Checked with ``lstat``: a symlink is never followed, for the directory or (with
    ``folders``) its inbox and checkpoints folders."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be examined: {_why(exc)}"
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink; optitui does not follow symlinks into run directories"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if st.st_uid != os.geteuid():
        return f"belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})"
    if st.st_mode & 0o077:
        return f"is open to other users (mode {stat.S_IMODE(st.st_mode):o}, expected 700)"
    for sub in (INBOX, CHECKPOINTS) if folders else ():
        try:
            sst = os.lstat(path / sub)
        except FileNotFoundError:
            return f"has no {sub} folder"
        if not stat.S_ISDIR(sst.st_mode) or sst.st_uid != os.geteuid():
            return f"its {sub} is not a folder of yours (a symlink?)"
    return None


def fresh_problem(path: Path) -> str | None:
    """Why an existing ``path`` cannot take a new job, or None when optitui made it for
    one and nothing ran in it yet."""
    why = own_problem(path, folders=False)
    if why is not None:
        return why if why == "does not exist" else "exists and " + why
    try:
        mst = os.lstat(path / MARKER)
    except FileNotFoundError:
        return "exists and was not made by optitui"
    if not stat.S_ISREG(mst.st_mode) or mst.st_uid != os.geteuid():
        return "exists and its marker is not a file of yours"
    if lock_held(path):
        return f"is in use by another job{_holder(path)}"
    if os.path.lexists(path / DB_NAME) or os.path.lexists(RunPaths(path).db):
        return "already holds a run"
    why = own_problem(path)
    return None if why is None else "exists and " + why


def _holder(root: Path) -> str:
    """`` (pid N)`` of the job holding ``root``'s lock, from its lock file."""
    try:
        fd = os.open(root / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            words = os.read(fd, 64).decode("ascii", "replace").split()
        finally:
            os.close(fd)
    except OSError:
        return ""
    return f" (pid {words[0]})" if words and words[0].isdigit() else ""


class RunLock:
    """An exclusive ``flock`` on the run directory's lock file, held for the job's life.

    The lock file holds the holder's pid, so a second job is told whose it is. The
    kernel drops the lock when the process ends, however it ends."""

    def __init__(self, paths: RunPaths) -> None:
        self._fd: int | None = None  # set first: __del__ runs even when __init__ raised
        self.path = paths.root / LOCK
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise RunDirError(f"cannot lock {paths.root}: {_why(exc)}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise RunDirError(f"{self.path} is not a lock file of yours")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunDirError(
                    f"{paths.root} is in use by another job{_holder(paths.root)}; "
                    "choose another --run-dir"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __del__(self) -> None:
        self.release()


def lock_held(root: Path) -> bool | None:
    """Whether a job holds ``root``'s lock now (None: no lock file, or it cannot be read)."""
    try:
        fd = os.open(root / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False


def remove_unused_run_dir(paths: RunPaths) -> None:
    """Remove a run directory no job recorded anything in (only optitui's own entries)."""
    if os.path.lexists(paths.db) or own_problem(paths.root) is not None:
        return
    placement.discard(paths.root)
    with contextlib.suppress(OSError):
        for name in (MARKER, LOCK):
            p = paths.root / name
            if os.path.lexists(p) and stat.S_ISREG(os.lstat(p).st_mode):
                os.unlink(p)
        for sub in (INBOX, CHECKPOINTS):
            (paths.root / sub).rmdir()
        paths.root.rmdir()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # a store on another host's disk
        return 0.0


def made_time(paths: RunPaths) -> float:
    """When a run directory was made: its marker file's time, which nothing changes later
    (the directory's own ctime moves whenever SQLite adds or drops its -wal and -shm files
    beside the store, so a run that was only read would sort as the newest)."""
    try:
        return (paths.root / MARKER).stat().st_mtime
    except OSError:  # not one optitui made, or not ours to look into
        return _ctime(paths.root)


def find_runs(root: Path | str) -> list[RunPaths]:
    """Every run directory directly under ``root``, oldest first by creation time.

    A folder this user may not look into is listed too (reading it says why); a
    ``root`` that cannot be read raises its OSError."""
    base = Path(root)
    if not base.is_dir():
        return []
    runs = []
    for p in base.iterdir():
        try:
            found = RunPaths(p).exists()
        except PermissionError:
            found = stat.S_ISDIR(os.lstat(p).st_mode)
        if found:
            runs.append(RunPaths(p))
    runs.sort(key=lambda r: _mtime_of(r))
    runs.sort(key=made_time)
    return runs


def _mtime_of(paths: RunPaths) -> float:
    try:
        return _mtime(paths.db)
    except OSError:
        return 0.0


def _ctime(path: Path) -> float:
    try:
        return path.stat().st_ctime
    except OSError:
        return 0.0
