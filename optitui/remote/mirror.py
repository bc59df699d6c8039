"""What a client knows of a remote run: every row it was sent, by id, once.

The mirror takes the server's messages (:meth:`Mirror.apply`, one thread) and
answers the viewer's reads (any thread) like a run store would: metric rows and
validation losses newer than an id, events, outcomes, the newest group snapshot,
range tests, checkpoints, status. Its cursors (the newest id of each table) are
what a reconnecting client asks the server to continue from, so a row is
neither lost nor taken twice across a dropped connection.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from optitui.remote import blobs
from optitui.remote.protocol import ProtocolError, field, record
from optitui.store.columns import MetricColumns, extend_rows, newer_rows
from optitui.store.manifests import Manifest
from optitui.store.reader import (
    CommandOutcome,
    EventRow,
    Race,
    RangeTest,
    Status,
)

#: output lines kept for the viewer between two reads
OUTPUT_LINES = 5000


@dataclass(frozen=True)
class RunInfo:
    """Where the run is: its path and the hosts of the server and of the writer."""

    path: str
    name: str
    host: str
    writer_host: str | None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{what}: expected a whole number, got {value!r}")
    return value


class Mirror:
    """The rows of one run received so far. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.changed = threading.Event()  # set whenever something arrives
        self.synced = threading.Event()  # the server sent everything it had once
        self.info: RunInfo | None = None
        self.cursors: dict[str, int] = {
            "metrics": 0,
            "val": 0,
            "events": 0,
            "commands": 0,
            "groups": 0,
        }
        self.output_offset: int | None = None
        self.repeated = 0  # rows received twice (and dropped): 0 unless a server misbehaves
        self._metrics: list[tuple[int, int, list[str], bytes]] = []  # not yet read
        self._val: list[tuple[int, int, int, float | None]] = []
        self._events: list[EventRow] = []
        self._outcomes: dict[str, CommandOutcome] = {}
        self._groups: tuple[int, list[dict[str, Any]]] = (0, [])
        self._tests: dict[str, RangeTest] = {}
        self._races: dict[str, Race] = {}
        self._checkpoints: list[Manifest] = []
        self._output: deque[str] = deque(maxlen=OUTPUT_LINES)
        self._meta: dict[str, Any] = {}
        self._status: Status | None = None
        self.skew = 0.0  # the server's clock minus ours

    # -- from the server ---------------------------------------------------------------
    def apply(self, msg: dict[str, Any], now: float) -> None:
        """Take one message; ProtocolError for one of the wrong shape (nothing is taken)."""
        t = msg.get("t")
        handler = getattr(self, f"_on_{t}", None) if isinstance(t, str) and t.isalpha() else None
        if handler is None:
            return  # a newer server's message this client does not know: ignored
        handler(msg, now)
        self.changed.set()

    def _on_run(self, msg: dict[str, Any], now: float) -> None:
        writer = msg.get("writer_host")
        self.info = RunInfo(
            field(msg, "path", str),
            field(msg, "name", str),
            field(msg, "host", str),
            writer if isinstance(writer, str) else None,
        )
        start = msg.get("from")
        if isinstance(start, dict):  # a stream that starts later than what we have
            with self._lock:
                for name in self.cursors:
                    self.cursors[name] = max(self.cursors[name], _int(start.get(name, 0), name))

    def _on_m(self, msg: dict[str, Any], now: float) -> None:
        names = field(msg, "cols", list)
        if not all(isinstance(n, str) for n in names):
            raise ProtocolError("cols: expected names")
        data = msg.get("payload")
        if not isinstance(data, bytes):
            raise ProtocolError("metric rows without their bytes")
        packed = msg.get("packed")
        if packed is not None:
            data = blobs.unpack(data, _int(packed, "packed"))
        got, at = [], 0
        for item in field(msg, "rows", list):
            if not isinstance(item, list) or len(item) != 3:
                raise ProtocolError("a metric row is [id, n, kinds]")
            row_id, n, kinds = _int(item[0], "id"), _int(item[1], "n"), item[2]
            end = at + blobs.size(kinds, n) if isinstance(kinds, str) else at
            got.append((row_id, n, names, blobs.decode(data[at:end], kinds, n, len(names))))
            at = end
        if at != len(data):
            raise ProtocolError(f"{len(data) - at} bytes after the metric rows")
        with self._lock:
            for row in got:
                if row[0] <= self.cursors["metrics"]:
                    self.repeated += 1
                    continue
                self._metrics.append(row)
                self.cursors["metrics"] = row[0]

    def _on_val(self, msg: dict[str, Any], now: float) -> None:
        rows = []
        for item in field(msg, "rows", list):
            if not isinstance(item, list) or len(item) != 4:
                raise ProtocolError("a validation row is [id, step, epoch, loss]")
            loss = item[3]
            if loss is not None and (isinstance(loss, bool) or not isinstance(loss, int | float)):
                raise ProtocolError("validation loss: expected a number")
            rows.append((_int(item[0], "id"), _int(item[1], "step"), _int(item[2], "epoch"), loss))
        with self._lock:
            for row in rows:
                if row[0] <= self.cursors["val"]:
                    self.repeated += 1
                    continue
                self._val.append(row)
                self.cursors["val"] = row[0]

    def _on_ev(self, msg: dict[str, Any], now: float) -> None:
        events = []
        for item in field(msg, "rows", list):
            if not isinstance(item, list) or len(item) != 6:
                raise ProtocolError("an event is [id, time, step, kind, message, data]")
            i, t, s, k, m, d = item
            if not isinstance(t, int | float) or not isinstance(k, str) or not isinstance(m, str):
                raise ProtocolError("an event of the wrong shape")
            events.append(EventRow(_int(i, "id"), float(t), _int(s, "step"), k, m, d))
        with self._lock:
            for e in events:
                if e.id <= self.cursors["events"]:
                    self.repeated += 1
                    continue
                self._events.append(e)
                self.cursors["events"] = e.id

    def _on_out(self, msg: dict[str, Any], now: float) -> None:
        got = []
        for item in field(msg, "rows", list):
            if not isinstance(item, list) or len(item) != 8:
                raise ProtocolError("an outcome is [rowid, id, kind, payload, outcome, ...]")
            rowid, cid, kind, payload, outcome, step, reason, t = item
            if not all(isinstance(x, str) for x in (cid, kind, payload, outcome)):
                raise ProtocolError("an outcome of the wrong shape")
            if reason is not None and not isinstance(reason, str):
                raise ProtocolError("an outcome's reason: expected text")
            applied = outcome == "applied"
            out = CommandOutcome(cid, kind, payload, applied, _int(step, "step"), reason, float(t))
            got.append((_int(rowid, "rowid"), out))
        with self._lock:
            for rowid, out in got:
                self._outcomes[out.id] = out
                self.cursors["commands"] = max(self.cursors["commands"], rowid)

    def _on_groups(self, msg: dict[str, Any], now: float) -> None:
        groups = field(msg, "groups", list)
        if not all(isinstance(g, dict) for g in groups):
            raise ProtocolError("groups: expected objects")
        with self._lock:
            self._groups = (_int(msg.get("step"), "step"), groups)
            self.cursors["groups"] = _int(msg.get("id"), "id")

    def _on_test(self, msg: dict[str, Any], now: float) -> None:
        test = record(RangeTest, msg.get("test"))
        with self._lock:
            self._tests[test.id] = test

    def _on_race(self, msg: dict[str, Any], now: float) -> None:
        race = record(Race, msg.get("race"))
        with self._lock:
            self._races[race.id] = race

    def _on_ckpt(self, msg: dict[str, Any], now: float) -> None:
        found = [record(Manifest, m) for m in field(msg, "list", list)]
        with self._lock:
            self._checkpoints = found

    def _on_log(self, msg: dict[str, Any], now: float) -> None:
        lines = field(msg, "lines", list)
        with self._lock:
            self._output.extend(str(x) for x in lines)
            self.output_offset = _int(msg.get("offset"), "offset")

    def _on_meta(self, msg: dict[str, Any], now: float) -> None:
        meta = field(msg, "meta", dict)
        with self._lock:
            self._meta = meta

    def _on_status(self, msg: dict[str, Any], now: float) -> None:
        field(msg, "state", str)
        field(msg, "step", int)
        field(msg, "heartbeat", (int, float))
        st = record(Status, msg)
        sent = msg.get("time")
        if isinstance(sent, int | float) and not isinstance(sent, bool):
            self.skew = float(sent) - now
        with self._lock:
            self._status = st

    def _on_synced(self, msg: dict[str, Any], now: float) -> None:
        self.synced.set()

    # -- to the viewer -----------------------------------------------------------------
    def read_metrics(self, into: MetricColumns | None = None) -> MetricColumns:
        """Append the metric rows received since the last call (one reader only)."""
        out = into if into is not None else MetricColumns()
        with self._lock:
            rows, self._metrics = self._metrics, []
        return extend_rows(out, newer_rows(rows, out.last_id))

    def val(self, after_id: int = 0) -> list[tuple[int, int, int, float | None]]:
        with self._lock:
            return [v for v in self._val if v[0] > after_id]

    def events(self, after_id: int = 0, limit: int | None = None) -> list[EventRow]:
        with self._lock:
            found = [e for e in self._events if e.id > after_id]
        return found if limit is None else found[:limit]

    def take_output(self) -> list[str]:
        with self._lock:
            lines = list(self._output)
            self._output.clear()
        return lines

    def outcome(self, command_id: str) -> CommandOutcome | None:
        with self._lock:
            return self._outcomes.get(command_id)

    def groups(self) -> tuple[int, list[dict[str, Any]]]:
        with self._lock:
            return self._groups

    def meta(self) -> dict[str, Any]:
        with self._lock:
            return self._meta

    def status(self) -> Status | None:
        """The server's word on the run, its times moved onto this host's clock."""
        with self._lock:
            st = self._status
        if st is None:
            return None
        skew = self.skew
        return replace(
            st,
            heartbeat=st.heartbeat - skew,
            last_record=None if st.last_record is None else st.last_record - skew,
        )

    def race(self, race_id: str) -> Race | None:
        with self._lock:
            return self._races.get(race_id)

    def range_test(self, test_id: str) -> RangeTest | None:
        with self._lock:
            return self._tests.get(test_id)

    def checkpoints(self) -> list[Manifest]:
        with self._lock:
            return list(self._checkpoints)

    def resume_from(self) -> dict[str, int]:
        """The cursors a reconnecting client continues from."""
        with self._lock:
            out = dict(self.cursors)
            if self.output_offset is not None:
                out["output"] = self.output_offset
            return out
