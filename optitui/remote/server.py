"""``optitui serve-stdio``: one run (or a list of runs) on stdin/stdout, for a client at
the other end of the user's ssh. Nothing listens on a port; no torch is imported.

The server is a reader like any other: it never writes the store, and it reads
one bounded batch at a time, finishing each read before it writes the batch
out. A client that stops reading (stalled, suspended, a dead link) therefore
blocks this process in ``write`` and nothing else: the job never waits for it,
and the server's memory stays at one batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from optitui.remote import blobs
from optitui.remote import rows as q
from optitui.remote.owner import Ledger, private_problem
from optitui.remote.protocol import (
    MAX_REQUEST,
    METRIC_BYTES,
    PROTOCOL,
    ProtocolError,
    dump,
    dump_with,
    plain,
    read_line,
)
from optitui.store import commands
from optitui.store.client import resolve_run
from optitui.store.layout import RunPaths
from optitui.store.manifests import listing
from optitui.store.output_tail import OutputTail
from optitui.store.reader import RunReader, latest_running_run
from optitui.version import __version__

#: with nothing else to say, the server says this often that it is alive
TICK_S = 2.0
#: how often the checkpoint folder is listed again
CHECKPOINTS_S = 1.0


class Closed(Exception):
    """The client went away (its end of the pipe is closed)."""


class Server:
    """Answers one client on ``inp``/``out`` (the process's stdin and stdout)."""

    def __init__(
        self,
        inp: IO[bytes],
        out: IO[bytes],
        *,
        default_run: str | None = None,
        root: str = "runs",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inp = inp
        self.out = out
        self.default_run = default_run
        self.root = root
        self.clock = clock
        self.sent_bytes = 0
        self.follow: Follow | None = None  # the run being followed, once it is
        self.requests: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=256)

    # -- the channel ---------------------------------------------------------------
    def write(self, obj: dict[str, Any]) -> None:
        self.write_line(dump(obj))

    def write_line(self, line: bytes) -> None:
        try:
            self.out.write(line)  # blocks while the client does not read: by design
            self.out.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError) as exc:
            raise Closed(str(exc)) from None
        self.sent_bytes += len(line)

    def error(self, text: str, *, fatal: bool = True, code: str = "refused") -> None:
        self.write({"t": "error", "text": text, "fatal": fatal, "code": code})

    def _read_requests(self) -> None:
        """Stdin to a bounded queue (a flooding client waits); None marks its end."""
        try:
            while True:
                try:
                    req = read_line(self.inp, MAX_REQUEST)
                except ProtocolError as exc:
                    req = {"op": "invalid", "why": str(exc)}
                if req is None:
                    break
                self.requests.put(req)
        except (OSError, ValueError):
            pass
        self.requests.put(None)

    # -- entry point ---------------------------------------------------------------
    def serve(self) -> int:
        """Run until the client leaves; the exit status says whether it was served."""
        try:
            self.write(
                {
                    "t": "hello",
                    "protocol": PROTOCOL,
                    "version": __version__,
                    "host": socket.gethostname(),
                    "uid": os.geteuid(),
                }
            )
            try:
                first = read_line(self.inp, MAX_REQUEST)
            except ProtocolError as exc:
                self.error(str(exc))
                return 2
            if first is None:
                return 0
            op = first.get("op")
            if op == "ls":
                return self._ls(first)
            if op == "follow":
                return self._follow(first)
            self.error(f"unknown request {op!r}; this server knows follow and ls")
            return 2
        except Closed:
            return 0

    # -- ls --------------------------------------------------------------------------
    def _ls(self, req: dict[str, Any]) -> int:
        from optitui.cli.ls import listing as list_runs

        root = Path(os.path.expanduser(str(req.get("root") or self.root)))
        found = list_runs(root, bool(req.get("all")), self.clock(), own_only=True)
        self.write(
            {
                "t": "runs",
                "root": str(root),
                "rows": [list(r) for r in found.rows],
                "runs": found.runs,
                "notes": found.notes,
                "older": found.older,
            }
        )
        return 0

    # -- follow ----------------------------------------------------------------------
    def _open(self, req: dict[str, Any]) -> tuple[RunPaths, RunReader] | None:
        run = req.get("run") or self.default_run
        root = os.path.expanduser(str(req.get("root") or self.root))
        try:
            if run:
                paths = resolve_run(os.path.expanduser(str(run)), root)
            else:
                found = latest_running_run(root)
                if found is None:
                    self.error(f"no running job under {root}/ on {socket.gethostname()}")
                    return None
                paths = found
        except FileNotFoundError as exc:
            self.error(str(exc))
            return None
        problem = private_problem(paths)
        if problem is not None:
            self.error(f"refused: {problem}")
            return None
        try:
            reader = RunReader(paths.root)
            problem = reader.schema_problem()
        except (sqlite3.Error, OSError) as exc:
            self.error(f"{paths.root}: the run store cannot be read: {exc}")
            return None
        if problem is not None:
            reader.close()
            self.error(problem, code="schema")
            return None
        return paths, reader

    def _follow(self, req: dict[str, Any]) -> int:
        opened = self._open(req)
        if opened is None:
            return 2
        paths, reader = opened
        threading.Thread(target=self._read_requests, name="requests", daemon=True).start()
        try:
            self.follow = Follow(self, paths, reader, req)
            return self.follow.run()
        finally:
            reader.close()


def _cursor(cursors: Any, name: str) -> int:
    value = cursors.get(name) if isinstance(cursors, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class Follow:
    """One client following one run: what it has, and what is new."""

    def __init__(
        self, server: Server, paths: RunPaths, reader: RunReader, req: dict[str, Any]
    ) -> None:
        self.s = server
        self.paths = paths
        self.r = reader
        self.ledger = Ledger(paths)
        interval = req.get("interval")
        self.interval = 0.25
        if isinstance(interval, int | float) and not isinstance(interval, bool):
            self.interval = min(max(float(interval), 0.05), 5.0)
        self.pack = req.get("pack") is True  # the client takes deflated rows
        cursors = req.get("cursors")
        if req.get("history") is False:  # from now on (a `send`): no history wanted
            cursors = q.newest_ids(reader)
        self.metrics = _cursor(cursors, "metrics")
        self.val = _cursor(cursors, "val")
        self.events = _cursor(cursors, "events")
        self.outcomes = _cursor(cursors, "commands")
        self.groups = _cursor(cursors, "groups")
        self.tail = OutputTail(paths.output)
        offset = cursors.get("output") if isinstance(cursors, dict) else None
        if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0:
            self.tail.offset = offset
        self.tests: dict[str, tuple[str, float]] = {}
        self.races: dict[str, tuple[str, float]] = {}
        self.meta: dict[str, Any] | None = None
        self.status: dict[str, Any] | None = None
        self.checkpoints: list[Any] | None = None
        self.next_listing = 0.0
        self.last_write = 0.0
        self.cols: dict[str, list[str]] = {}

    def write(self, obj: dict[str, Any]) -> None:
        self.s.write(obj)
        self.last_write = time.monotonic()

    def cursors(self) -> dict[str, int]:
        return {
            "metrics": self.metrics,
            "val": self.val,
            "events": self.events,
            "commands": self.outcomes,
            "groups": self.groups,
        }

    def run(self) -> int:
        meta = self.r.meta(refresh=True)
        here = socket.gethostname()
        self.write(
            {
                "t": "run",
                "path": str(self.paths.root.resolve()),
                "name": self.paths.root.name,
                "host": here,
                "writer_host": meta.get("host"),
                "from": self.cursors(),  # where this stream starts
            }
        )
        synced = False
        while True:
            try:
                more = self.pump()
            except sqlite3.Error as exc:  # a busy or briefly unreadable store: say so, go on
                self.s.error(f"cannot read the run store: {exc}", fatal=False)
                more = False
            if not more and not synced:
                self.write({"t": "synced"})
                synced = True
            if time.monotonic() - self.last_write > TICK_S:
                self.write({"t": "tick", "time": self.s.clock()})
            if not self.requests(0 if more else self.interval):
                return 0  # the client closed its end

    def requests(self, wait: float) -> bool:
        """Handle the client's requests, waiting up to ``wait`` s for the first; False
        once the client has closed its end."""
        try:
            req = self.s.requests.get(timeout=wait) if wait > 0 else self.s.requests.get_nowait()
        except queue.Empty:
            return True
        while req is not None:
            self.handle(req)
            try:
                req = self.s.requests.get_nowait()
            except queue.Empty:
                return True
        return False

    # -- one pass over the store --------------------------------------------------------
    def pump(self) -> bool:
        """Send one bounded batch of everything new; True when more is waiting."""
        r = self.r
        meta = r.meta(refresh=True)
        if meta != self.meta:
            self.meta = meta
            self.write({"t": "meta", "meta": meta})
        found = q.newest_groups(r, self.groups)
        if found is not None:
            self.groups = found[0]
            self.write({"t": "groups", "id": found[0], "step": found[1], "groups": found[2]})
        more = self._metrics()
        val = q.val_rows(r, self.val)
        if val:
            self.val = val[-1][0]
            self.write({"t": "val", "rows": [list(v) for v in val]})
            more = more or len(val) == q.VAL_ROWS
        events = q.event_rows(r, self.events)
        if events:
            self.events = events[-1][0]
            self.write({"t": "ev", "rows": events})
            more = more or len(events) == q.EVENT_ROWS
        answers = q.outcome_rows(r, self.outcomes)
        if answers:
            self.outcomes = answers[-1][0]
            self.write({"t": "out", "rows": [list(a) for a in answers]})
        self._tests()
        self._checkpoints()
        lines = self.tail.read()
        if lines:
            self.write({"t": "log", "lines": lines, "offset": self.tail.offset})
        status = {**plain(r.status(now=self.s.clock())), "time": self.s.clock()}
        if {**status, "time": 0} != {**(self.status or {}), "time": 0}:
            self.status = status
            self.write({"t": "status", **status})
        return more

    def _metrics(self) -> bool:
        """Send the metric rows after the cursor: a message per run of rows with the same
        columns, up to METRIC_BYTES of them. True when more rows are waiting."""
        rows = q.metric_rows(self.r, self.metrics)
        backlog = len(rows) == q.METRIC_ROWS
        # a live run's few new rows are packed; a long backlog is not, since deflating it
        # would cost more time than a fast link saves
        packed = self.pack and not backlog
        unit: list[tuple[Any, ...]] = []
        size = 0
        for row in rows:
            if unit and (row[2] != unit[-1][2] or size + len(row[3]) > METRIC_BYTES):
                self._send_unit(unit, packed)
                unit, size = [], 0
            unit.append(row)
            size += len(row[3])
        if unit:
            self._send_unit(unit, packed)
        return backlog

    def _send_unit(self, unit: list[tuple[Any, ...]], packed: bool) -> None:
        """One message: the rows' ids, steps and column kinds, then their bytes."""
        cols_text = unit[0][2]
        names = self.cols.get(cols_text)
        if names is None:
            names = self.cols[cols_text] = list(json.loads(cols_text))
        k = len(names)
        rows, data = [], []
        for row_id, n, _, blob in unit:
            if n < 1 or len(blob) != 8 * n * k:  # a damaged row is said, not sent
                self.s.error(f"metric row {row_id} is damaged and not sent", fatal=False)
                continue
            kinds, kept = blobs.encode(blob, n, k)
            rows.append([row_id, n, kinds])
            data.append(kept)
        self.metrics = unit[-1][0]
        if not rows:
            return
        payload = b"".join(data)
        msg: dict[str, Any] = {"t": "m", "cols": names, "rows": rows}
        if packed:
            msg["packed"] = len(payload)
            payload = blobs.pack(payload)
        self.s.write_line(dump_with(msg, payload))
        self.last_write = time.monotonic()

    def _tests(self) -> None:
        keys = q.test_keys(self.r)
        for test_id, key in keys.items():
            if self.tests.get(test_id) != key:
                for test in self.r.range_tests(test_id):
                    self.write({"t": "test", "test": plain(test)})
                self.tests[test_id] = key
        for race_id, key in q.test_keys(self.r, "races").items():
            if self.races.get(race_id) != key:
                for race in self.r.races(race_id):
                    self.write({"t": "race", "race": plain(race)})
                self.races[race_id] = key

    def _checkpoints(self) -> None:
        now = time.monotonic()
        if now < self.next_listing:
            return
        self.next_listing = now + CHECKPOINTS_S
        try:
            found = [plain(m) for m in listing(self.paths.checkpoints)]
        except OSError:
            return
        if found != self.checkpoints:
            self.checkpoints = found
            self.write({"t": "ckpt", "list": found})

    # -- requests ----------------------------------------------------------------------
    def handle(self, req: dict[str, Any]) -> None:
        op = req.get("op")
        if op == "send":
            self._send(req)
        elif op == "invalid":
            self.s.error(f"a request this server cannot read: {req.get('why')}", fatal=False)
        else:
            self.s.error(f"unknown request {op!r} while following", fatal=False)

    def _send(self, req: dict[str, Any]) -> None:
        """Put the client's command in the inbox once, whatever reconnects repeat it."""
        cid, kind, args = req.get("id"), req.get("kind"), req.get("args", {})
        if not isinstance(cid, str) or not commands.ID_RE.match(cid):
            self.s.error(f"a command id that is not one: {cid!r}", fatal=False)
            return
        if self.ledger.has(cid) or self.r.outcome(cid) is not None:
            self.write({"t": "sent", "id": cid})  # delivered by an earlier connection
            return
        try:
            if not isinstance(kind, str) or not isinstance(args, dict):
                raise commands.CommandError("a command is a kind and an object of arguments")
            commands.send(self.paths, kind, args, cid=cid)
        except (commands.CommandError, OSError) as exc:
            self.write({"t": "refused", "id": cid, "reason": str(exc)})
            return
        with contextlib.suppress(OSError):  # without the ledger a repeat is still refused
            self.ledger.add(cid)
        self.write({"t": "sent", "id": cid})
