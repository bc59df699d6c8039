"""The SQLite schema of a run store, and how connections are opened."""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from pathlib import Path

from optitui.store import netfs, placement

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL              -- JSON
);
CREATE TABLE IF NOT EXISTS status (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL,             -- starting running paused stopped finished failed
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    heartbeat REAL NOT NULL,         -- unix time; the writer thread refreshes it
    last_record REAL,                -- unix time of the newest metric record
    steps_per_s REAL,
    samples_per_s REAL,
    device_mem INTEGER,              -- bytes allocated on the accelerator, NULL on CPU
    message TEXT
);
-- Per-step metrics, batched: each row holds n consecutive steps as columns of
-- float64 values (see metrics.py). Readers decode only whole rows.
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY,
    first_step INTEGER NOT NULL,
    last_step INTEGER NOT NULL,
    n INTEGER NOT NULL,
    columns TEXT NOT NULL,           -- JSON list of column names
    data BLOB NOT NULL
);
-- Values the user logged at other times than a step (an evaluation), batched the same
-- way: columns step, epoch, time and user:<name>, one row per flush. Absent in stores
-- made before it (read as empty).
CREATE TABLE IF NOT EXISTS logged (
    id INTEGER PRIMARY KEY,
    n INTEGER NOT NULL,
    columns TEXT NOT NULL,
    data BLOB NOT NULL
);
-- The machine's series (process CPU and memory, host memory, each GPU), sampled every
-- 2 s by every rank and batched the same way: columns time, step and the names listed
-- in system.py, one row per batch of one rank. Absent in stores made before it.
CREATE TABLE IF NOT EXISTS system (
    id INTEGER PRIMARY KEY,
    rank INTEGER NOT NULL,
    n INTEGER NOT NULL,
    columns TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS val (
    id INTEGER PRIMARY KEY,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    loss REAL,
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    step INTEGER NOT NULL,
    kind TEXT NOT NULL,              -- command, warning, info, error, output, ...
    message TEXT NOT NULL,
    data TEXT                        -- JSON or NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,           -- JSON as received (or a note when unreadable)
    outcome TEXT NOT NULL,           -- applied | rejected
    step INTEGER NOT NULL,           -- optimizer steps completed when it took effect
    reason TEXT,                     -- why rejected; for applied, what it made or how
    time REAL NOT NULL
);
-- Snapshots of every param group's hyperparameters and editable fields,
-- written at start and after each change.
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY,
    step INTEGER NOT NULL,
    time REAL NOT NULL,
    data TEXT NOT NULL               -- JSON list, one object per group
);
-- LR range tests, rewritten as they run so a viewer can draw the curve growing.
CREATE TABLE IF NOT EXISTS lr_tests (
    id TEXT PRIMARY KEY,
    step INTEGER NOT NULL,           -- the training step it ran at (training resumes there)
    status TEXT NOT NULL,            -- running done cancelled failed
    config TEXT NOT NULL,            -- JSON: the sweep settings and which group(s)
    data TEXT NOT NULL,              -- JSON: lrs, losses, smoothed
    suggestions TEXT,                -- JSON list, when done
    message TEXT,
    time REAL NOT NULL
);
-- Optimizer races, rewritten as they run so a viewer can draw the curves growing.
CREATE TABLE IF NOT EXISTS races (
    id TEXT PRIMARY KEY,
    step INTEGER NOT NULL,           -- the training step it ran at (training resumes there)
    status TEXT NOT NULL,            -- running done cancelled failed
    config TEXT NOT NULL,            -- JSON: steps, val, group, candidates
    data TEXT NOT NULL,              -- JSON: each candidate's curves and state; timings
    results TEXT,                    -- JSON list, the ranked table, once ended
    message TEXT,
    time REAL NOT NULL
);
"""


def connect(db: Path, *, create: bool = False) -> sqlite3.Connection:
    """Open the store. Readers pass ``create=False`` and never create a file."""
    if not create and not db.is_file():
        raise FileNotFoundError(f"no run store at {db}")
    if create and not db.exists():
        # build the schema under a temporary name, then rename: a reader that sees
        # store.sqlite always finds its tables. The file is made here (O_EXCL,
        # O_NOFOLLOW) so that SQLite opens a file of ours, never a planted link.
        tmp = db.with_name(f".{db.name}.{os.getpid()}.tmp")
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
        conn.close()  # checkpoints the WAL into the file and removes it
        os.rename(tmp, db)
    if not create and _read_only_fs(db.parent):
        # no job can be writing a store on a read-only filesystem, and SQLite could not
        # make its WAL index there: read the file as the finished thing it is
        uri = f"file:{urllib.parse.quote(str(db.resolve()))}?mode=ro&immutable=1"
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    if not create and placement.settled(db.parent) and netfs.network_filesystem(db.parent):
        # a finished store copied into a run directory on a network filesystem: read it
        # as the immutable file it is (no locks, which such filesystems may not have)
        uri = f"file:{urllib.parse.quote(str(db.resolve()))}?mode=ro&immutable=1"
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn = sqlite3.connect(str(db), timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    if create:
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SCHEMA)
    return conn


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
