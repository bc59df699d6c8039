"""The serve-stdio protocol: one JSON object per line, each way, over the user's ssh.

The server speaks first (``hello``, with :data:`PROTOCOL`); the client then sends
one request, ``follow`` (a run, from the row ids it already has) or ``ls`` (the
runs under a root). While following, the client may send ``send`` lines
(commands, each with an id the client chose) and the server streams what is
new: ``m`` (metric rows up to a row id, their columns as raw bytes after the line,
see :mod:`.blobs`; packed for a live run when the client asks with ``pack``),
``val``, ``ev``
(events), ``out`` (command outcomes), ``groups`` (the newest snapshot), ``test``
(a range test that changed), ``status``, ``meta``, ``ckpt`` (the checkpoint
list), ``log`` (output lines), ``synced`` (once, when the client has caught up)
and ``tick`` (every few seconds of silence, so a dead link shows).

Every line is one JSON object; a line may announce ``"bytes": N``, and N raw bytes
follow it (a metric unit's float64 columns: a quarter fewer bytes than base64,
and no encoding work). Lines and payloads are bounded (:data:`MAX_LINE` from the
server, :data:`MAX_REQUEST` from the client); anything malformed is a
:class:`ProtocolError`, never a crash.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any, Protocol

PROTOCOL = 1
#: longest line a server may send (a metrics message stays well below it)
MAX_LINE = 16 * 1024 * 1024
#: longest line a client may send (a command is at most 16 KiB)
MAX_REQUEST = 64 * 1024
#: metric blob bytes per ``m`` message before base64
METRIC_BYTES = 512 * 1024


class ProtocolError(Exception):
    """A line that breaks the protocol (too long, not JSON, a wrong shape)."""


class LineTooLong(ProtocolError):
    """A line over the limit: the stream cannot be read on from there."""


def dump(obj: dict[str, Any]) -> bytes:
    """One line: compact JSON and a newline (NaN allowed: event data may hold it)."""
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


def dump_with(obj: dict[str, Any], payload: bytes) -> bytes:
    """A line announcing ``payload`` (``"bytes": N``), then the payload's N raw bytes."""
    return dump({**obj, "bytes": len(payload)}) + payload


class Lines(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...

    def read(self, size: int = -1, /) -> bytes: ...


def read_line(stream: Lines, limit: int) -> dict[str, Any] | None:
    """The next message, or None at the end of the stream. A message that announces
    ``"bytes": N`` is followed by N raw bytes (at most ``limit``), returned under
    ``"payload"``."""
    line = stream.readline(limit + 1)
    if not line:
        return None
    if len(line) > limit:
        raise LineTooLong(f"a line longer than {limit} bytes")
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"a line that is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("a line that is not a JSON object")
    size = obj.get("bytes")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= limit:
            raise LineTooLong(f"a payload of {size!r} bytes (the limit is {limit})")
        payload = stream.read(size)
        if len(payload) != size:
            raise LineTooLong(f"a payload cut short: {len(payload)} of {size} bytes")
        obj["payload"] = payload
    return obj


def field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """``obj[name]``, checked to be of ``kind`` (bool is never an int here)."""
    value = obj.get(name)
    wanted = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in wanted:
        raise ProtocolError(f"{name}: expected {kind}, got {value!r}")
    if not isinstance(value, kind):
        raise ProtocolError(f"{name}: expected {kind}, got {type(value).__name__}")
    return value


def record(cls: type[Any], data: Any) -> Any:
    """A dataclass of ``cls`` from its dict form, or ProtocolError."""
    if not isinstance(data, dict):
        raise ProtocolError(f"{cls.__name__}: expected an object")
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise ProtocolError(f"{cls.__name__}: {exc}") from None


def plain(obj: Any) -> dict[str, Any]:
    """A dataclass as the dict that :func:`record` reads back."""
    return asdict(obj)
