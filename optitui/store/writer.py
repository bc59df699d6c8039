"""The job side of the run store: a bounded queue drained by one writer thread.

The training thread only ever calls :meth:`Recorder.put`, which never blocks
and never touches the disk: when the queue is full the record is dropped and
counted, and the count is reported as a warning event once there is room.
"""

from __future__ import annotations

import json
import math
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from optitui.store import metrics, placement
from optitui.store.layout import RunPaths
from optitui.store.records import (
    Event,
    GroupSnapshot,
    MetaUpdate,
    MetricBatch,
    Outcome,
    RangeTestUpdate,
    Record,
    StatusUpdate,
    ValRecord,
)
from optitui.store.schema import SCHEMA_VERSION, connect

_STOP = object()
_ROUTINE = (MetricBatch, StatusUpdate, MetaUpdate, GroupSnapshot)


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=True, separators=(",", ":"), default=str)


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


class StoreWriter:
    """Writes records to the database. Owned by exactly one thread."""

    def __init__(self, paths: RunPaths, meta: dict[str, Any]) -> None:
        self.paths = paths
        self.conn = connect(paths.db, create=True)
        self._last_step = 0
        self._last_epoch = 0
        with self.conn:
            self.conn.execute("BEGIN")
            self._meta({**meta, "schema_version": SCHEMA_VERSION})
            self.conn.execute(
                "INSERT OR REPLACE INTO status (id, state, step, epoch, heartbeat) "
                "VALUES (1, 'starting', 0, 0, ?)",
                (time.time(),),
            )

    def _meta(self, values: dict[str, Any]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(k, _json(v)) for k, v in values.items()],
        )

    def write(self, records: Iterable[Record]) -> None:
        """Write a batch in one transaction, then refresh the heartbeat."""
        c = self.conn
        c.execute("BEGIN")
        try:
            for r in records:
                self._write_one(r)
            c.execute("UPDATE status SET heartbeat = ? WHERE id = 1", (time.time(),))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

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
        elif isinstance(r, ValRecord):
            c.execute(
                "INSERT INTO val (step, epoch, loss, time) VALUES (?,?,?,?)",
                (r.step, r.epoch, _finite_or_none(r.loss), r.time),
            )
        elif isinstance(r, Event):
            c.execute(
                "INSERT INTO events (time, step, kind, message, data) VALUES (?,?,?,?,?)",
                (r.time, r.step, r.kind, r.message, None if r.data is None else _json(r.data)),
            )
        elif isinstance(r, Outcome):
            c.execute(
                "INSERT OR REPLACE INTO commands (id, kind, payload, outcome, step, reason, time) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    r.id,
                    r.kind,
                    r.payload,
                    "applied" if r.applied else "rejected",
                    r.step,
                    r.reason,
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
                    r.message,
                ),
            )
        elif isinstance(r, MetaUpdate):
            self._meta(r.values)
        elif isinstance(r, RangeTestUpdate):
            c.execute(
                "INSERT OR REPLACE INTO lr_tests (id, step, status, config, data, suggestions, "
                "message, time) VALUES (?,?,?,?,?,?,?,?)",
                (
                    r.id,
                    r.step,
                    r.status,
                    _json(r.config),
                    _json(r.data),
                    None if r.suggestions is None else _json(r.suggestions),
                    r.message,
                    r.time,
                ),
            )
        else:  # pragma: no cover - a programming error, not input
            raise TypeError(f"unknown record {type(r).__name__}")

    def close(self) -> None:
        self.conn.close()
        placement.settle(self.paths.root)  # a store kept on this node goes to its run dir


class Recorder:
    """Queue + writer thread. ``put`` is safe to call from any thread and never blocks.

    Routine records (metrics, status) are written a few times a second, in one
    transaction each time, and putting one wakes nobody: a fast training loop
    pays for a deque append, not for a thread switch. Command outcomes and
    events wake the writer at once. Only metric batches are bounded
    (``max_queue``): when the disk cannot keep up they are dropped and counted;
    everything else is always kept, so every command gets its answer.
    """

    def __init__(
        self,
        paths: RunPaths,
        meta: dict[str, Any],
        *,
        max_queue: int = 4096,
        flush_interval: float = 0.2,
    ) -> None:
        self.paths = paths
        self._writer = StoreWriter(paths, meta)
        self._items: deque[Any] = deque()  # append and popleft are atomic
        self._urgent = threading.Event()
        self._max_queue = max_queue
        self._flush_interval = flush_interval
        self.dropped = 0
        self._reported_dropped = 0
        self._thread = threading.Thread(target=self._run, name="optitui-store-writer", daemon=True)
        self._started = False
        self._closed = False

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def put(self, record: Record) -> bool:
        """Queue a record without blocking; False (and counted) for a metric batch that
        finds the queue full."""
        if isinstance(record, MetricBatch) and len(self._items) >= self._max_queue:
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
        warned = False
        while True:
            self._urgent.wait(self._flush_interval)
            self._urgent.clear()
            batch, stop = self._drain()
            if self.dropped > self._reported_dropped:
                lost = self.dropped - self._reported_dropped
                self._reported_dropped = self.dropped
                batch.append(Event(0, "warning", f"store queue full: {lost} records dropped"))
            try:
                self._writer.write(batch)  # also refreshes the heartbeat
            except sqlite3.Error as exc:  # a full disk must not stop training
                if not warned:
                    print(f"optitui: cannot write run store: {exc}", file=sys.stderr)
                    warned = True
            if stop:
                return
            if self._items:  # more than one batch was waiting
                self._urgent.set()

    def close(self, final: StatusUpdate | None = None, timeout: float = 30.0) -> None:
        """Flush everything queued (plus ``final``), stop the thread, close the db."""
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
        self._items.append(_STOP)
        self._urgent.set()
        self._thread.join(timeout)
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
