"""Following a run on another host through the user's ssh, with reconnects.

:class:`RemoteRun` keeps one ``ssh HOST optitui serve-stdio`` going: a reader
thread applies the server's lines to a :class:`~optitui.remote.mirror.Mirror`,
and when the connection drops it connects again with backoff, asking the
server to continue from the mirror's cursors. Commands are sent with an id
chosen here and repeated after a reconnect until the server confirms them (the
server delivers each id once). It satisfies ``RunAccess`` for the dashboard and
the store-reader methods the dashboard's history reads.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any

from optitui.remote.mirror import Mirror, RunInfo
from optitui.remote.protocol import (
    MAX_LINE,
    PROTOCOL,
    LineTooLong,
    ProtocolError,
    dump,
    read_line,
)
from optitui.remote.target import Target
from optitui.store import commands
from optitui.store.columns import MetricColumns
from optitui.store.manifests import Manifest
from optitui.store.reader import (
    CommandOutcome,
    EventRow,
    Race,
    RangeTest,
    Status,
)

#: seconds between reconnect attempts: doubling, then steady
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
#: a connection this long without a line from the server (it ticks every 2 s) is dead
DEAD_S = 30.0
#: a connection that lasted this long starts the backoff over
STEADY_S = 30.0


class RemoteError(Exception):
    """A remote run that cannot be followed; the message says why, for the user."""


class _Fatal(Exception):
    """The server refused (no such run, another user's, another version): no retry."""

    def __init__(self, text: str, code: str = "refused") -> None:
        super().__init__(text)
        self.code = code


class _Counted:
    """A stream's lines, counting their bytes."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.bytes = 0

    def readline(self, size: int = -1, /) -> bytes:
        line = self.stream.readline(size)
        self.bytes += len(line)
        return line

    def read(self, size: int = -1, /) -> bytes:
        data = self.stream.read(size)
        self.bytes += len(data)
        return data


class Session:
    """One ssh process running ``optitui serve-stdio``; its lines in and out."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.lines: queue.Queue[dict[str, Any] | BaseException | None] = queue.Queue(maxsize=16)
        self.outbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=20)
        self.received = 0  # protocol bytes read from the server
        self._threads = [
            threading.Thread(target=target, name=f"ssh-{target.__name__}", daemon=True)
            for target in (self._read, self._write, self._errors)
        ]
        for t in self._threads:
            t.start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        counted = _Counted(out)
        while True:
            try:
                msg = read_line(counted, MAX_LINE)
                self.received = counted.bytes
            except ProtocolError as exc:  # the reader of the queue decides what it means
                self.lines.put(exc)
                if isinstance(exc, LineTooLong):
                    return
                continue
            except (OSError, ValueError) as exc:
                self.lines.put(exc)
                return
            self.lines.put(msg)
            if msg is None:
                return

    def _write(self) -> None:
        inp = self.proc.stdin
        assert inp is not None
        with contextlib.suppress(OSError, ValueError):
            while (req := self.outbox.get()) is not None:
                inp.write(dump(req))
                inp.flush()

    def _errors(self) -> None:
        err: IO[bytes] | None = self.proc.stderr
        assert err is not None
        with contextlib.suppress(OSError, ValueError):
            for raw in err:
                text = raw.decode("utf-8", "replace").strip()
                if text:
                    self._stderr.append(text)

    def why(self) -> str:
        """What ssh (or the remote shell) said last, for the user."""
        try:
            code: int | None = self.proc.wait(1.0)  # its stdout ended: it is on its way out
        except subprocess.TimeoutExpired:
            code = None
        self._threads[2].join(1.0)  # what it wrote to stderr before it went
        said = self._stderr[-1] if self._stderr else ""
        if code == 127 or "not found" in said or "No such file" in said:
            return (
                f"{said or 'optitui not found'} (the remote command is $OPTITUI_REMOTE, "
                "default `optitui`: set it to the remote optitui, e.g. ~/venv/bin/optitui)"
            )
        if said:
            return said
        return "the connection closed" if code is None else f"ssh exited with status {code}"

    def close(self) -> None:
        self.outbox.put(None)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                if f is not None:
                    f.close()


def hello(sess: Session, timeout: float | None) -> dict[str, Any]:
    """The server's greeting; lines a login script printed before it are skipped."""
    skipped: list[str] = []
    while True:
        try:
            msg = sess.lines.get(timeout=timeout)
        except queue.Empty:
            raise RemoteError(f"no answer from the server within {timeout:g} s") from None
        if msg is None:
            raise RemoteError(sess.why())
        if isinstance(msg, ProtocolError) and len(skipped) < 50:
            skipped.append(str(msg))  # e.g. a .bashrc that echoes
            continue
        if isinstance(msg, BaseException):
            raise RemoteError(f"{sess.why()} ({msg})")
        if msg.get("t") != "hello":
            raise RemoteError(f"the server did not greet: {str(msg)[:200]}")
        if msg.get("protocol") != PROTOCOL:
            raise _Fatal(
                f"the optitui there ({msg.get('version')}) speaks protocol {msg.get('protocol')}"
                f" and this one {PROTOCOL}: install the same optitui version on both hosts",
                "protocol",
            )
        return msg


def list_runs(target: Target, show_all: bool, timeout: float = 60.0) -> dict[str, Any]:
    """``optitui ls`` run on the far side: its rows and notes. Raises RemoteError."""
    sess = Session(target.ssh_argv(["serve-stdio"], batch=False))
    try:
        try:
            hello(sess, timeout)
        except _Fatal as exc:
            raise RemoteError(str(exc)) from None
        sess.outbox.put({"op": "ls", "root": target.path or None, "all": show_all})
        try:
            msg = sess.lines.get(timeout=timeout)
        except queue.Empty:
            raise RemoteError(f"no list from {target.host} within {timeout:g} s") from None
        if not isinstance(msg, dict):
            raise RemoteError(sess.why())
        if msg.get("t") == "error":
            raise RemoteError(str(msg.get("text")))
        if msg.get("t") != "runs" or not isinstance(msg.get("rows"), list):
            raise RemoteError(f"an answer that is not a list of runs: {str(msg)[:200]}")
        return msg
    finally:
        sess.close()


class RemoteRun:
    """A run on another host, followed over ssh: the dashboard's ``RunAccess`` and feed source.

    ``history=False`` starts from the run's present (for ``optitui send``).
    """

    def __init__(
        self,
        target: Target,
        *,
        root: str | None = None,
        history: bool = True,
        interval: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.root = root
        self.history = history
        self.interval = interval
        self.clock = clock
        self.mirror = Mirror()
        self.ready = threading.Event()  # the run is found (or the server refused)
        self.connections = 0  # sessions that reached the run
        self._received = 0  # protocol bytes of the sessions that ended
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._session: Session | None = None
        self._unacked: dict[str, dict[str, Any]] = {}
        self._refused: dict[str, str] = {}
        self._fatal: str | None = None
        self.fatal_code: str | None = None  # "schema", "protocol", "refused", "unreachable"
        self._problem: str | None = f"connecting to {target.host}…"
        self._thread = threading.Thread(target=self._run, name="optitui-remote", daemon=True)

    # -- the connection -----------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> RunInfo:
        """Block until the server has found the run; RemoteError when it cannot."""
        if not self.ready.wait(timeout):
            raise RemoteError(f"{self.target.label}: no answer within {timeout:g} s")
        if self._fatal is not None or self.mirror.info is None:
            raise RemoteError(self._fatal or "the server did not say which run it follows")
        return self.mirror.info

    def _run(self) -> None:
        tries = 0
        while not self._closed.is_set():
            began = time.monotonic()
            try:
                why = self._connect(batch=self.connections > 0)
            except (_Fatal, RemoteError) as exc:
                if isinstance(exc, _Fatal) or self.connections == 0:
                    self.fatal_code = exc.code if isinstance(exc, _Fatal) else "unreachable"
                    self._fatal = f"{self.target.label}: {exc}"
                    self._problem = f"cannot follow {self._fatal}"
                    self.ready.set()
                    self.mirror.changed.set()
                    return
                why = str(exc)
            if self._closed.is_set():
                return
            if time.monotonic() - began > STEADY_S:
                tries = 0
            delay = BACKOFF[min(tries, len(BACKOFF) - 1)]
            tries += 1
            self._problem = (
                f"connection to {self.target.host} lost ({why}); reconnecting in "
                f"{delay:g} s (attempt {tries}) · the job is not affected"
            )
            self.mirror.changed.set()
            self._closed.wait(delay)

    def _connect(self, *, batch: bool) -> str:
        """One session, until it ends; returns why it ended."""
        remote = ["serve-stdio", *([self.target.path] if self.target.path else [])]
        req: dict[str, Any] = {
            "op": "follow",
            "run": self.target.path or None,
            "root": self.root,
            "interval": self.interval,
            "pack": True,
            "cursors": self.mirror.resume_from(),
        }
        if not self.history and self.connections == 0:
            req["history"] = False
        sess = Session(self.target.ssh_argv(remote, batch=batch))
        sess.outbox.put(req)  # sent at once: the server reads it after its greeting
        try:
            hello(sess, 60.0 if batch else None)
            with self._lock:
                self._session = sess
                for pending in self._unacked.values():  # maybe lost with the last connection
                    sess.outbox.put(pending)
            return self._receive(sess)
        finally:
            with self._lock:
                self._session = None
                self._received += sess.received
            sess.close()

    def _receive(self, sess: Session) -> str:
        while not self._closed.is_set():
            try:
                msg = sess.lines.get(timeout=DEAD_S)
            except queue.Empty:
                return f"no word from {self.target.host} for {DEAD_S:g} s"
            if msg is None:
                return sess.why()
            if isinstance(msg, BaseException):
                return f"{msg}; {sess.why()}"
            t = msg.get("t")
            if t == "error":
                text = str(msg.get("text"))
                if msg.get("fatal", True):
                    raise _Fatal(text, str(msg.get("code", "refused")))
                self._problem = text
                self.mirror.changed.set()
                continue
            if t in ("sent", "refused"):
                self._answered(msg)
                continue
            self.mirror.apply(msg, self.clock())
            if t == "run":
                self.connections += 1
                self._problem = None
                self.ready.set()
        return "closed"

    def _answered(self, msg: dict[str, Any]) -> None:
        cid = msg.get("id")
        if not isinstance(cid, str):
            return
        with self._lock:
            self._unacked.pop(cid, None)
            if msg.get("t") == "refused":
                self._refused[cid] = f"not sent: {msg.get('reason')}"
        self.mirror.changed.set()

    def link_problem(self) -> str | None:
        """What the user should know about the connection, or None while it is well."""
        return self._problem

    @property
    def fatal(self) -> str | None:
        return self._fatal

    @property
    def received_bytes(self) -> int:
        """Protocol bytes received from the server over every connection so far."""
        with self._lock:
            return self._received + (0 if self._session is None else self._session.received)

    @property
    def ssh_pid(self) -> int | None:
        """The ssh process carrying the connection now (None between connections)."""
        with self._lock:
            return None if self._session is None else self._session.proc.pid

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            sess = self._session
        if sess is not None:
            sess.close()
        if self._thread.is_alive():
            self._thread.join(5.0)

    # -- RunAccess -----------------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.target.label

    def send(self, kind: str, args: dict[str, Any]) -> str:
        args = dict(args)
        commands.validate(kind, args)  # CommandError here, before anything travels
        cid = commands.new_id()
        req = {"op": "send", "id": cid, "kind": kind, "args": args}
        with self._lock:
            self._unacked[cid] = req
            if self._session is not None:
                self._session.outbox.put(req)
        return cid

    def outcome(self, command_id: str) -> CommandOutcome | None:
        return self.mirror.outcome(command_id)

    def undelivered(self, command_id: str) -> str | None:
        with self._lock:
            refused = self._refused.get(command_id)
            waiting = command_id in self._unacked
        if refused is not None:
            return refused
        if waiting and self._fatal is not None:
            return f"not sent: {self._fatal}"
        return None

    def status(self) -> Status:
        st = self.mirror.status()
        return st if st is not None else Status("starting", 0, 0, 0.0, *[None] * 5)

    def range_test(self, test_id: str) -> RangeTest | None:
        return self.mirror.range_test(test_id)

    def race(self, race_id: str) -> Race | None:
        return self.mirror.race(race_id)

    def checkpoints(self) -> list[Manifest]:
        return self.mirror.checkpoints()

    # -- what the dashboard's history reads --------------------------------------------
    def read_metrics(self, into: MetricColumns | None = None) -> MetricColumns:
        return self.mirror.read_metrics(into)

    def val(self, after_id: int = 0) -> list[tuple[int, int, int, float | None]]:
        return self.mirror.val(after_id)

    def events(self, after_id: int = 0, limit: int | None = None) -> list[EventRow]:
        return self.mirror.events(after_id, limit)
