"""The job side of the run store: a bounded queue drained by one writer thread.

The training thread only ever calls :meth:`Recorder.put`, which never blocks
and never touches the disk: when the queue is full the record is dropped and
counted, and the count is reported as a warning event once there is room.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from optitui.store import metrics, placement
from optitui.store.layout import RunDirError, RunLock, RunPaths
from optitui.store.records import (
    Event,
    GroupSnapshot,
    LoggedBatch,
    MetaUpdate,
    MetricBatch,
    Outcome,
    RaceUpdate,
    RangeTestUpdate,
    Record,
    StatusUpdate,
    SystemBatch,
    ValRecord,
)
from optitui.store.schema import SCHEMA_VERSION, connect
from optitui.store.supervise import Supervisor
from optitui.version import __version__

_STOP = object()
_DROPPED = {"dropped_record": True}
_ROUTINE = (MetricBatch, LoggedBatch, SystemBatch, StatusUpdate, MetaUpdate, GroupSnapshot)


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=True, separators=(",", ":"), default=str)


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _text(value: str | None) -> str | None:
    """Text SQLite can store: lone surrogates (undecodable file names) become escapes."""
    if value is None:
        return None
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def no_space(exc: BaseException) -> bool:
    """Whether a write failed because the disk (or quota) is full."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF == SQLITE_FULL:
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return "disk is full" in text or "no space left" in text


def _busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)


SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL = 5, 6, 13


class StoreWriter:
    """Writes records to the database. Owned by exactly one thread."""

    def __init__(self, paths: RunPaths, meta: dict[str, Any]) -> None:
        self.paths = paths
        # one job per run directory, for its whole life; then a store made fresh
        self.lock = RunLock(paths)
        try:
            if os.path.lexists(paths.db):
                raise RunDirError(f"{paths.root} already holds a run; choose another --run-dir")
            self.conn = connect(paths.db, create=True)
        except BaseException:
            self.lock.release()
            raise
        self._last_step = 0
        self._last_epoch = 0
        with self.conn:
            self.conn.execute("BEGIN")
            self._meta({**meta, "schema_version": SCHEMA_VERSION, "optitui_version": __version__})
            self.conn.execute(
                "INSERT OR REPLACE INTO status (id, state, step, epoch, heartbeat) "
                "VALUES (1, 'starting', 0, 0, ?)",
                (time.time(),),
            )

    def _meta(self, values: dict[str, Any]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(_text(str(k)), _json(v)) for k, v in values.items()],
        )

    def write(self, records: Iterable[Record]) -> None:
        """Write a batch in one transaction, heartbeat included: all of it, or (raising)
        none of it."""
        c = self.conn
        c.execute("BEGIN")
        try:
            for r in records:
                self._write_one(r)
            c.execute("UPDATE status SET heartbeat = ? WHERE id = 1", (time.time(),))
            c.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back after some errors (a full disk)
            if c.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    c.execute("ROLLBACK")
            raise

    def beat(self) -> None:
        """Refresh the heartbeat: its own small write, so it goes on when a batch cannot."""
        self.conn.execute("UPDATE status SET heartbeat = ? WHERE id = 1", (time.time(),))

    def _write_one(self, r: Record) -> None:
        c = self.conn
        if isinstance(r, MetricBatch):
            names, n, blob = metrics.encode(r.columns)
            if n == 0:
                return
            steps = r.columns["step"]
            c.execute(
                "INSERT INTO metrics (first_step, last_step, n, columns, data) VALUES (?,?,?,?,?)",
                (int(steps[0]), int(steps[-1]), n, _json(names), blob),
            )
        elif isinstance(r, LoggedBatch):
            names, n, blob = metrics.encode(r.columns)
            if n:
                c.execute(
                    "INSERT INTO logged (n, columns, data) VALUES (?,?,?)",
                    (n, _json(names), blob),
                )
        elif isinstance(r, SystemBatch):
            names, n, blob = metrics.encode(r.columns)
            if n:
                c.execute(
                    "INSERT INTO system (rank, n, columns, data) VALUES (?,?,?,?)",
                    (r.rank, n, _json(names), blob),
                )
        elif isinstance(r, ValRecord):
            c.execute(
                "INSERT INTO val (step, epoch, loss, time) VALUES (?,?,?,?)",
                (r.step, r.epoch, _finite_or_none(r.loss), r.time),
            )
        elif isinstance(r, Event):
            c.execute(
                "INSERT INTO events (time, step, kind, message, data) VALUES (?,?,?,?,?)",
                (
                    r.time,
                    r.step,
                    _text(r.kind),
                    _text(r.message),
                    None if r.data is None else _json(r.data),
                ),
            )
        elif isinstance(r, Outcome):
            # never OR REPLACE: an answer, once given, is history
            c.execute(
                "INSERT INTO commands (id, kind, payload, outcome, step, reason, time) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    _text(r.id),
                    _text(r.kind),
                    _text(r.payload),
                    "applied" if r.applied else "rejected",
                    r.step,
                    _text(r.reason),
                    r.time,
                ),
            )
        elif isinstance(r, GroupSnapshot):
            c.execute(
                "INSERT INTO groups (step, time, data) VALUES (?,?,?)",
                (r.step, r.time, _json(r.groups)),
            )
        elif isinstance(r, StatusUpdate):
            c.execute(
                "UPDATE status SET state=?, step=?, epoch=?, "
                "steps_per_s=COALESCE(?, steps_per_s), samples_per_s=COALESCE(?, samples_per_s), "
                "device_mem=COALESCE(?, device_mem), last_record=COALESCE(?, last_record), "
                "message=? WHERE id = 1",
                (
                    r.state,
                    r.step,
                    r.epoch,
                    _finite_or_none(r.steps_per_s),
                    _finite_or_none(r.samples_per_s),
                    r.device_mem,
                    r.last_record,
                    _text(r.message),
                ),
            )
        elif isinstance(r, MetaUpdate):
            self._meta(r.values)
        elif isinstance(r, RangeTestUpdate | RaceUpdate):  # rewritten as they run
            test = isinstance(r, RangeTestUpdate)
            table, ending = ("lr_tests", "suggestions") if test else ("races", "results")
            end = r.suggestions if isinstance(r, RangeTestUpdate) else r.results
            c.execute(
                f"INSERT OR REPLACE INTO {table} (id, step, status, config, data, {ending}, "
                "message, time) VALUES (?,?,?,?,?,?,?,?)",
                (
                    _text(r.id),
                    r.step,
                    r.status,
                    _json(r.config),
                    _json(r.data),
                    None if end is None else _json(end),
                    _text(r.message),
                    r.time,
                ),
            )
        else:  # pragma: no cover - a programming error, not input
            raise TypeError(f"unknown record {type(r).__name__}")

    def close(self) -> None:
        self.conn.close()
        try:
            placement.settle(self.paths.root)  # a store kept on this node goes to its run dir
        finally:
            self.lock.release()


class Recorder:
    """Queue + writer thread. ``put`` is safe to call from any thread and never blocks.

    Routine records (metrics, status) are written a few times a second, in one
    transaction each time, and putting one wakes nobody: a fast training loop
    pays for a deque append, not for a thread switch. Command outcomes and
    events wake the writer at once. Only metric batches are bounded
    (``max_queue``): when the disk cannot keep up they are dropped and counted;
    everything else is always kept, so every command gets its answer.

    When the disk is full, nothing is dropped for that: the batch that could
    not be written goes back to the front of the queue and is retried every
    ``retry_s`` until space returns (then the queue's bound applies, and what
    it drops is counted and reported). The heartbeat is written on its own, so
    viewers keep seeing a live job. A record that cannot be written for any
    other reason is dropped alone, with an error event saying so.
    """

    def __init__(
        self,
        paths: RunPaths,
        meta: dict[str, Any],
        *,
        max_queue: int = 4096,
        flush_interval: float = 0.2,
        retry_s: float = 1.0,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.paths = paths
        self._writer = StoreWriter(paths, meta)
        self._items: deque[Any] = deque()  # append and popleft are atomic
        self._urgent = threading.Event()
        self._max_queue = max_queue
        self._flush_interval = flush_interval
        self._retry_s = retry_s
        self.dropped = 0
        self._reported_dropped = 0
        #: the disk was full at the last try (the reason, as said on stderr)
        self.blocked: str | None = None
        self._stopping = False
        sup = supervisor if supervisor is not None else Supervisor()
        self._thread = sup.thread("optitui-store-writer", self._run)
        self._started = False
        self._closed = False
        self._deadline = math.inf

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def put(self, record: Record) -> bool:
        """Queue a record without blocking; False (and counted) for a metric batch that
        finds the queue full."""
        if isinstance(record, MetricBatch) and len(self._items) >= self._max_queue:
            if self.dropped == self._reported_dropped:
                print(
                    f"optitui: the run store's queue is full ({self._max_queue} records): "
                    "metric batches are dropped and counted until it drains",
                    file=sys.stderr,
                )
            self.dropped += 1
            return False
        self._items.append(record)
        if not isinstance(record, _ROUTINE):
            self._urgent.set()
        return True

    def _drain(self) -> tuple[list[Record], bool]:
        batch: list[Record] = []
        while self._items and len(batch) < 1024:
            item = self._items.popleft()
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        while True:
            wait = self._retry_s if self.blocked else self._flush_interval
            if not self._stopping:
                self._urgent.wait(wait)
            self._urgent.clear()
            batch, stop = self._drain()
            self._stopping |= stop
            if self.dropped > self._reported_dropped and not self.blocked:
                lost = self.dropped - self._reported_dropped
                self._reported_dropped = self.dropped
                batch.append(
                    Event(0, "warning", f"store queue full: {lost} metric batches dropped")
                )
            if not self._write(batch):  # the heartbeat on its own, when no batch carried it
                with contextlib.suppress(sqlite3.Error):
                    self._writer.beat()
            if self._stopping:
                if not self._items or time.monotonic() > self._deadline:
                    self._give_up()
                    return
                if self.blocked:
                    time.sleep(min(self._retry_s, 0.5))
            elif self._items and not self.blocked:  # more than one batch was waiting
                self._urgent.set()

    def _write(self, batch: list[Record]) -> bool:
        """Write a batch; True when some of it was written (and with it the heartbeat)."""
        if not batch:
            return False
        try:
            self._writer.write(batch)
            self._unblocked()
            return True
        except Exception as exc:
            if no_space(exc) or _busy(exc):
                self._requeue(batch, exc)
                return False
        # something in the batch cannot be written: one record at a time, dropping those
        wrote = False
        for i, r in enumerate(batch):
            try:
                self._writer.write([r])
                wrote = True
            except Exception as exc:
                if no_space(exc) or _busy(exc):
                    self._requeue(batch[i:], exc)
                    return wrote
                self._drop(r, exc)
        self._unblocked()
        return wrote

    def _requeue(self, batch: list[Record], exc: BaseException) -> None:
        """Put a batch back at the front, to be written when there is space again."""
        self._items.extendleft(reversed(batch))
        if self._stopping:  # the final state first: a viewer must not read a dead job
            finals = [r for r in batch if isinstance(r, StatusUpdate)]
            with contextlib.suppress(Exception):
                if finals:
                    self._writer.write(finals[-1:])
        if not no_space(exc):
            return
        if self.blocked is None:
            self.blocked = (
                f"cannot write the run store {self.paths.db}: no space left on device; "
                "metric batches wait in memory (up to "
                f"{self._max_queue}) and are written when space returns"
            )
            print(f"optitui: {self.blocked}", file=sys.stderr, flush=True)

    def _unblocked(self) -> None:
        if self.blocked is None:
            return
        self.blocked = None
        lost = self.dropped - self._reported_dropped
        note = f"; {lost} metric batches were dropped (the queue was full)" if lost else ""
        print(f"optitui: the run store is written again{note}", file=sys.stderr, flush=True)
        self.put(Event(0, "warning", f"the disk was full; the run store caught up{note}"))

    def _drop(self, r: Record, exc: BaseException) -> None:
        what = f"a {type(r).__name__} record could not be stored and was dropped: {exc}"
        print(f"optitui: {what}", file=sys.stderr, flush=True)
        if not (isinstance(r, Event) and r.data == _DROPPED):  # never a loop of such events
            self._items.append(Event(0, "error", what, _DROPPED))

    def _give_up(self) -> None:
        left = [r for r in self._items if r is not _STOP]
        if left:
            why = self.blocked or "the store could not be written"
            print(f"optitui: {len(left)} records were not written: {why}", file=sys.stderr)
        self._items.clear()

    def close(self, final: StatusUpdate | None = None, timeout: float = 30.0) -> None:
        """Flush everything queued (plus ``final``), stop the thread, close the db.

        On a full disk the writer keeps trying for ``timeout`` seconds; the final
        state goes first, so the store says how the run ended."""
        if self._closed:
            return
        self._closed = True
        if not self._started:
            if final is not None:
                self._writer.write([final])
            self._writer.close()
            return
        if final is not None:
            self._items.append(final)
        self._deadline = time.monotonic() + timeout
        self._items.append(_STOP)
        self._urgent.set()
        if self._thread.is_alive():
            self._thread.join(timeout + 5.0)
        if final is not None and self._items:  # the writer thread is gone: the end at least
            with contextlib.suppress(Exception):
                self._writer.write([final])
        self._writer.close()


class NullRecorder:
    """What ranks other than 0 record with: nothing (rank 0 alone writes the store)."""

    dropped = 0

    def start(self) -> None:
        pass

    def put(self, record: Record) -> bool:
        return True

    def close(self, final: StatusUpdate | None = None, timeout: float = 30.0) -> None:
        pass
