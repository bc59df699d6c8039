"""The viewer side of the run store: read-only, incremental, tolerant of a live writer.

Readers never write the database. Every query reads whole committed rows (WAL
gives each query a consistent snapshot), so a store that is being written is
always safe to read. A job that stopped refreshing its heartbeat, or whose
process is gone, reads as ``crashed`` rather than ``running``.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from optitui.store import metrics, system
from optitui.store.columns import MetricColumns as MetricColumns  # readers take it from here
from optitui.store.columns import extend_rows
from optitui.store.layout import DB_NAME, RunPaths, find_runs, lock_held
from optitui.store.placement import StoreElsewhere
from optitui.store.schema import SCHEMA_VERSION, connect
from optitui.store.system import SystemSeries

#: A live job refreshes its heartbeat every fraction of a second; this much
#: silence means the process is gone (or frozen hard enough to count as gone).
STALE_AFTER_S = 15.0
LIVE_STATES = ("starting", "running", "paused", "lr-find", "race")


@dataclass(frozen=True)
class Status:
    state: str  # starting running paused stopped finished failed crashed
    step: int
    epoch: int
    heartbeat: float
    last_record: float | None
    steps_per_s: float | None
    samples_per_s: float | None
    device_mem: int | None
    message: str | None

    @property
    def alive(self) -> bool:
        return self.state in LIVE_STATES


@dataclass(frozen=True)
class CommandOutcome:
    id: str
    kind: str
    payload: str
    applied: bool
    step: int
    reason: str | None
    time: float


@dataclass(frozen=True)
class EventRow:
    id: int
    time: float
    step: int
    kind: str
    message: str
    data: dict[str, Any] | None


@dataclass(frozen=True)
class RangeTest:
    id: str
    step: int
    status: str  # running done cancelled failed
    config: dict[str, Any]
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: list[dict[str, Any]]
    message: str | None
    time: float


@dataclass(frozen=True)
class Race:
    """One optimizer race: its settings, each candidate's curves, the table once ended."""

    id: str
    step: int
    status: str  # running done cancelled failed
    config: dict[str, Any]  # steps, val, group, candidates (0 = current)
    data: dict[str, Any]  # losses, smoothed, states, val (each a list by candidate); timings
    results: list[dict[str, Any]]  # the ranked table (empty while running)
    message: str | None
    time: float


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunReader:
    """Read one run directory. Cheap to open; use as a context manager."""

    def __init__(self, run_dir: Path | str) -> None:
        self.paths = RunPaths(Path(run_dir))
        where = self.paths.elsewhere()
        if where is not None:  # a WAL store on another host's disk: not through the network
            raise StoreElsewhere(self.paths.root, where)
        self.conn = connect(self.paths.db)
        self.conn.execute("PRAGMA query_only = ON")
        self._meta: dict[str, Any] | None = None

    def __enter__(self) -> RunReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # -- metadata and status -------------------------------------------------
    def meta(self, refresh: bool = False) -> dict[str, Any]:
        if self._meta is None or refresh:
            rows = self.conn.execute("SELECT key, value FROM meta").fetchall()
            self._meta = {k: json.loads(v) for k, v in rows}
        return self._meta

    def schema_problem(self) -> str | None:
        """Why this store cannot be read by this version, or None."""
        version = self.meta().get("schema_version")
        if version != SCHEMA_VERSION:
            return (
                f"run store schema version {version!r}; this optitui reads version {SCHEMA_VERSION}"
            )
        return None

    def status(self, now: float | None = None) -> Status:
        row = self.conn.execute(
            "SELECT state, step, epoch, heartbeat, last_record, steps_per_s, samples_per_s, "
            "device_mem, message FROM status WHERE id = 1"
        ).fetchone()
        if row is None:
            return Status("starting", 0, 0, 0.0, None, None, None, None, None)
        st = Status(*row)
        if st.state in LIVE_STATES and self._looks_dead(st, now):
            return replace(st, state="crashed", message=st.message or self._silence())
        return st

    def writer_host(self) -> str | None:
        """The host the job writes from, when it is not this one: its liveness is then
        judged by its heartbeat alone (its process cannot be looked at from here)."""
        host = self.meta().get("host")
        return host if isinstance(host, str) and host != socket.gethostname() else None

    def _silence(self) -> str:
        host = self.writer_host()
        if host is None:
            return "the job stopped without a word"
        return (
            f"no heartbeat for over {STALE_AFTER_S:g} s from the job on {host} (judged by "
            f"heartbeat only: its process cannot be checked from {socket.gethostname()})"
        )

    def _job_gone(self) -> bool:
        """The job has ended, or its process is gone from this host (never a guess from a
        heartbeat's age, which depends on the reader's clock)."""
        row = self.conn.execute("SELECT state FROM status WHERE id = 1").fetchone()
        if row is not None and row[0] not in LIVE_STATES:
            return True
        meta = self.meta()
        pid, host = meta.get("pid"), meta.get("host")
        if isinstance(pid, int) and host == socket.gethostname():
            return not _pid_alive(pid) or lock_held(self.paths.root) is False
        return False

    def _looks_dead(self, st: Status, now: float | None) -> bool:
        """On the job's own host, its process decides: alive (and holding the run's lock)
        is never called crashed, however old the heartbeat (a full disk can hold it
        back). From another host only the heartbeat can tell."""
        meta = self.meta()
        pid, host = meta.get("pid"), meta.get("host")
        if isinstance(pid, int) and host == socket.gethostname():
            if not _pid_alive(pid):
                return True
            # a live pid that no longer holds the lock is another process (pid reuse)
            return lock_held(self.paths.root) is False
        return ((now or time.time()) - st.heartbeat) > STALE_AFTER_S

    # -- incremental reads ---------------------------------------------------
    def read_metrics(self, into: MetricColumns | None = None) -> MetricColumns:
        """Append every metric row newer than ``into.last_id`` (all rows when None)."""
        out = into if into is not None else MetricColumns()
        q = "SELECT id, n, columns, data FROM metrics WHERE id > ? ORDER BY id"
        return extend_rows(out, self.conn.execute(q, (out.last_id,)))

    def read_logged(self, into: MetricColumns | None = None) -> MetricColumns:
        """Values logged between steps, read as :meth:`read_metrics` reads steps."""
        out = into if into is not None else MetricColumns()
        q = "SELECT id, n, columns, data FROM logged WHERE id > ? ORDER BY id"
        try:
            rows = self.conn.execute(q, (out.last_id,)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return out
            raise
        return extend_rows(out, rows)

    def read_system(self, into: SystemSeries | None = None) -> SystemSeries:
        """The machine's series of every rank, newer rows than ``into`` holds
        (:mod:`optitui.store.system`)."""
        return system.read(self.conn, into)

    def val(self, after_id: int = 0) -> list[tuple[int, int, int, float | None]]:
        """(id, step, epoch, loss) of validation records newer than ``after_id``."""
        return list(
            self.conn.execute(
                "SELECT id, step, epoch, loss FROM val WHERE id > ? ORDER BY id", (after_id,)
            )
        )

    def val_times(self) -> list[tuple[int, float | None, float]]:
        """(step, loss, time) of every validation record, oldest first."""
        return list(self.conn.execute("SELECT step, loss, time FROM val ORDER BY id"))

    def events(self, after_id: int = 0, limit: int | None = None) -> list[EventRow]:
        q = "SELECT id, time, step, kind, message, data FROM events WHERE id > ? ORDER BY id"
        args: tuple[Any, ...] = (after_id,)
        if limit is not None:
            q += " LIMIT ?"
            args = (after_id, limit)
        return [
            EventRow(i, t, s, k, m, None if d is None else json.loads(d))
            for i, t, s, k, m, d in self.conn.execute(q, args)
        ]

    def last_events(self, kinds: Sequence[str], limit: int) -> list[EventRow]:
        """The newest ``limit`` events of these kinds, oldest first."""
        marks = ", ".join("?" * len(kinds))
        rows = self.conn.execute(
            f"SELECT id, time, step, kind, message, data FROM events WHERE kind IN ({marks}) "
            "ORDER BY id DESC LIMIT ?",
            (*kinds, limit),
        ).fetchall()
        return [
            EventRow(i, t, s, k, m, None if d is None else json.loads(d))
            for i, t, s, k, m, d in reversed(rows)
        ]

    def metric_ids(self) -> list[int]:
        """The id of every metric row (one row holds a flush's steps), oldest first."""
        return [r[0] for r in self.conn.execute("SELECT id FROM metrics ORDER BY id")]

    def metric_names(self) -> list[str]:
        """Every metric column's name, in the order :meth:`read_metrics` meets them
        (reads the rows' column lists only, not their data)."""
        names: list[str] = []
        for (cols,) in self.conn.execute(
            "SELECT columns FROM metrics GROUP BY columns ORDER BY MIN(id)"
        ):
            names += [n for n in json.loads(cols) if n not in names]
        return names

    def metric_rows(self, ids: Sequence[int]) -> list[dict[str, array[float]]]:
        """The columns of these metric rows, in id order (a sample or a tail of a run)."""
        out: list[dict[str, array[float]]] = []
        wanted = list(ids)
        for start in range(0, len(wanted), 500):  # SQLite caps the number of parameters
            part = wanted[start : start + 500]
            marks = ", ".join("?" * len(part))
            for n, cols, blob in self.conn.execute(
                f"SELECT n, columns, data FROM metrics WHERE id IN ({marks}) ORDER BY id", part
            ):
                out.append(metrics.decode(json.loads(cols), n, blob))
        return out

    def outcomes(self) -> list[CommandOutcome]:
        """Every command's answer, in the order the job gave them."""
        rows = self.conn.execute(
            "SELECT id, kind, payload, outcome, step, reason, time FROM commands "
            "ORDER BY time, rowid"
        )
        return [CommandOutcome(i, k, p, o == "applied", s, r, t) for i, k, p, o, s, r, t in rows]

    def outcome(self, command_id: str) -> CommandOutcome | None:
        row = self.conn.execute(
            "SELECT id, kind, payload, outcome, step, reason, time FROM commands WHERE id = ?",
            (command_id,),
        ).fetchone()
        if row is None:
            return None
        i, k, p, o, s, r, t = row
        return CommandOutcome(i, k, p, o == "applied", s, r, t)

    def groups(self, first: bool = False) -> tuple[int, list[dict[str, Any]]]:
        """(step, groups) of the newest param-group snapshot (``first``: of the one taken
        when the run started); (0, []) before the first."""
        order = "ASC" if first else "DESC"
        row = self.conn.execute(
            f"SELECT step, data FROM groups ORDER BY id {order} LIMIT 1"
        ).fetchone()
        if row is None:
            return 0, []
        return int(row[0]), list(json.loads(row[1]))

    def range_tests(self, test_id: str | None = None) -> list[RangeTest]:
        """Every LR range test, oldest first (or just ``test_id``). A test that was running
        when its job died reads as failed."""
        q = "SELECT id, step, status, config, data, suggestions, message, time FROM lr_tests"
        rows = (
            self.conn.execute(q + " WHERE id = ?", (test_id,))
            if test_id is not None
            else self.conn.execute(q + " ORDER BY time")
        )
        out = []
        gone: bool | None = None  # whether the job is gone, looked up once if needed
        for i, step, status, config, data, sugg, msg, t in rows:
            d = json.loads(data)
            if status == "running":
                gone = self._job_gone() if gone is None else gone
                if gone:  # it died during the test: the test will never end
                    status, msg = "failed", "the job ended during the test"
            out.append(
                RangeTest(
                    i,
                    step,
                    status,
                    json.loads(config),
                    d.get("lrs", []),
                    d.get("losses", []),
                    d.get("smoothed", []),
                    json.loads(sugg) if sugg else [],
                    msg,
                    t,
                )
            )
        return out

    def races(self, race_id: str | None = None) -> list[Race]:
        """Every optimizer race, oldest first (or just ``race_id``); none in a store made
        before races were. A race that was running when its job died reads as failed."""
        q = "SELECT id, step, status, config, data, results, message, time FROM races"
        try:
            rows = (
                self.conn.execute(q + " WHERE id = ?", (race_id,)).fetchall()
                if race_id is not None
                else self.conn.execute(q + " ORDER BY time").fetchall()
            )
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        out = []
        for i, step, status, config, data, results, msg, t in rows:
            if status == "running" and self._job_gone():
                status, msg = "failed", "the job ended during the race"
            d = json.loads(data)
            out.append(
                Race(i, step, status, json.loads(config), d, json.loads(results or "[]"), msg, t)
            )
        return out

    def last_loss(self) -> float | None:
        row = self.conn.execute(
            "SELECT n, columns, data FROM metrics ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        cols = metrics.decode(json.loads(row[1]), row[0], row[2])
        loss = cols.get("loss")
        return float(loss[-1]) if loss else None

    def best_val(self) -> float | None:
        """The lowest validation loss recorded (None before the first one)."""
        row = self.conn.execute("SELECT MIN(loss) FROM val").fetchone()
        return None if row is None or row[0] is None else float(row[0])


class RunUnreadable(FileNotFoundError):
    """A run that cannot be read here; the message is one line naming it and why."""


def latest_running_run(root: Path | str) -> RunPaths | None:
    """The most recently started run under ``root`` whose job is alive, if any."""
    for paths in reversed(find_runs(root)):
        try:
            with RunReader(paths.root) as reader:
                if reader.status().alive:
                    return paths
        except Exception:  # a damaged store is not a candidate
            continue
    return None


def why_unreadable(path: Path) -> str | None:
    """Why this user cannot read ``path`` (a run directory or its store), or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except PermissionError:
        return "permission denied (a folder above it is closed to you)"
    except OSError as exc:
        return exc.strerror or str(exc)
    need = os.R_OK | (os.X_OK if stat.S_ISDIR(st.st_mode) else 0)
    if os.access(path, need, effective_ids=True):
        return None
    me = os.geteuid()
    if st.st_uid != me:
        return f"permission denied: it belongs to {_user(st.st_uid)}, not to you ({_user(me)})"
    return f"permission denied: mode {stat.S_IMODE(st.st_mode):o} does not let you read it"


def _user(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def open_reader(run_dir: Path | str) -> RunReader:
    """Open a reader, or raise RunUnreadable with one line saying why not: no such
    directory, not a run, permission denied (and whose it is), a damaged store."""
    root = Path(run_dir)
    why = why_unreadable(root)
    if why is not None:
        raise RunUnreadable(f"{run_dir}: {why}")
    if not root.is_dir():
        raise RunUnreadable(
            f"{run_dir}: not a run directory (no such folder)"
            if not root.exists()
            else f"{run_dir}: not a folder"
        )
    paths = RunPaths(root)
    if paths.elsewhere() is None:
        if not paths.exists():
            raise RunUnreadable(f"{run_dir}: not a run directory (no {DB_NAME} in it)")
        why = why_unreadable(paths.db)
        if why is not None:
            raise RunUnreadable(f"{run_dir}: its run store {paths.db.name}: {why}")
    try:
        reader = RunReader(paths.root)
    except StoreElsewhere:
        raise
    except (sqlite3.Error, OSError) as exc:
        raise RunUnreadable(f"{run_dir}: the run store cannot be opened: {exc}") from None
    try:  # SQLite reads the file only now: a damaged one says so here, once
        reader.conn.execute("SELECT count(*) FROM meta").fetchone()
    except sqlite3.DatabaseError as exc:
        reader.close()
        raise RunUnreadable(
            f"{run_dir}: the run store cannot be read: it is damaged ({exc})"
        ) from None
    except sqlite3.Error as exc:
        reader.close()
        raise RunUnreadable(f"{run_dir}: the run store cannot be read: {exc}") from None
    return reader
