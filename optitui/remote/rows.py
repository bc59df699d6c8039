"""The run store read by row id, as the server streams it: each query takes a bounded
batch of whole rows and ends its read before anything is sent, so a server blocked on
a slow client holds no read transaction and never stands in the writer's way."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from optitui.store.reader import RunReader

#: rows per query while catching up (a metric row holds one flush: tens of steps)
METRIC_ROWS = 256
EVENT_ROWS = 2000
VAL_ROWS = 5000
OUTCOME_ROWS = 1000


def metric_rows(r: RunReader, after: int, limit: int = METRIC_ROWS) -> list[tuple[Any, ...]]:
    """(id, n, columns as JSON text, blob) of metric rows after ``after``, oldest first."""
    return r.conn.execute(
        "SELECT id, n, columns, data FROM metrics WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
    ).fetchall()


def val_rows(r: RunReader, after: int) -> list[tuple[Any, ...]]:
    return r.conn.execute(
        "SELECT id, step, epoch, loss FROM val WHERE id > ? ORDER BY id LIMIT ?", (after, VAL_ROWS)
    ).fetchall()


def event_rows(r: RunReader, after: int) -> list[list[Any]]:
    """[id, time, step, kind, message, data] of events after ``after``."""
    rows = r.conn.execute(
        "SELECT id, time, step, kind, message, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
        (after, EVENT_ROWS),
    ).fetchall()
    return [[i, t, s, k, m, None if d is None else json.loads(d)] for i, t, s, k, m, d in rows]


def outcome_rows(r: RunReader, after: int) -> list[tuple[Any, ...]]:
    """(rowid, id, kind, payload, outcome, step, reason, time) of answers given after
    row ``after`` (rowids only grow: an answer is a new row)."""
    return r.conn.execute(
        "SELECT rowid, id, kind, payload, outcome, step, reason, time FROM commands "
        "WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (after, OUTCOME_ROWS),
    ).fetchall()


def newest_groups(r: RunReader, after: int) -> tuple[int, int, list[Any]] | None:
    """(id, step, groups) of the newest snapshot when it is newer than ``after``."""
    row = r.conn.execute(
        "SELECT id, step, data FROM groups WHERE id > ? ORDER BY id DESC LIMIT 1", (after,)
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]), list(json.loads(row[2])))


def test_keys(r: RunReader, table: str = "lr_tests") -> dict[str, tuple[str, float]]:
    """id -> (status, time) of every range test (or race, from ``races``): one that
    changed has a new key. A store made before races has no races."""
    try:
        rows = r.conn.execute(f"SELECT id, status, time FROM {table}").fetchall()
    except sqlite3.OperationalError:
        return {}
    return {str(i): (str(s), float(t)) for i, s, t in rows}


def newest_ids(r: RunReader) -> dict[str, int]:
    """The newest row id of each streamed table: where a client with no history starts."""
    out = {}
    for name, q in (
        ("metrics", "SELECT MAX(id) FROM metrics"),
        ("val", "SELECT MAX(id) FROM val"),
        ("events", "SELECT MAX(id) FROM events"),
        ("commands", "SELECT MAX(rowid) FROM commands"),
    ):
        out[name] = int(r.conn.execute(q).fetchone()[0] or 0)
    return out
