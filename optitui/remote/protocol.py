"""The serve-stdio protocol: one JSON object per line, each way, over the user's ssh.

The server speaks first (``hello``, with :data:`PROTOCOL`); the client then sends
one request, ``follow`` (a run, from the row ids it already has) or ``ls`` (the
runs under a root). While following, the client may send ``send`` lines
(commands, each with an id the client chose) and the server streams what is
new: ``m`` (metric rows by id, their float64 blobs in base64, deflated for a live
run when the client asks with ``pack``), ``val``, ``ev``
(events), ``out`` (command outcomes), ``groups`` (the newest snapshot), ``test``
(a range test that changed), ``status``, ``meta``, ``ckpt`` (the checkpoint
list), ``log`` (output lines), ``synced`` (once, when the client has caught up)
and ``tick`` (every few seconds of silence, so a dead link shows).

Every line is bounded (:data:`MAX_LINE` from the server, :data:`MAX_REQUEST`
from the client); anything malformed is a :class:`ProtocolError`, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
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


class Lines(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


def read_line(stream: Lines, limit: int) -> dict[str, Any] | None:
    """The next message, or None at the end of the stream."""
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
    return obj


def blob_text(blob: bytes, *, packed: bool = False) -> str:
    """A metric blob as text: base64 of its float64 bytes, or (``packed``) of the bytes
    grouped by significance (all first bytes, then all second bytes, ...) and deflated.

    Grouping puts the bytes that barely change (signs, exponents, a step column's high
    bytes) side by side, so a fast deflate shrinks a typical run's rows to a fifth or
    less; it costs CPU, so a server packs the rows of a live run, not a long backlog."""
    if packed:
        blob = zlib.compress(b"".join(blob[i::8] for i in range(8)), 1)
    return base64.b64encode(blob).decode("ascii")


def text_blob(text: Any, size: int, *, packed: bool = False) -> bytes:
    """The blob of ``size`` bytes that :func:`blob_text` wrote (ProtocolError otherwise)."""
    if not isinstance(text, str):
        raise ProtocolError("a metric blob that is not text")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"a metric blob that is not base64: {exc}") from None
    if packed:
        inflate = zlib.decompressobj()
        try:
            grouped = inflate.decompress(data, size + 1)  # never more than the row holds
        except zlib.error as exc:
            raise ProtocolError(f"a packed metric blob that does not inflate: {exc}") from None
        if len(grouped) != size or size % 8 or inflate.unconsumed_tail:
            raise ProtocolError(f"a packed metric blob that is not {size} bytes")
        k = size // 8
        out = bytearray(size)
        for i in range(8):
            out[i::8] = grouped[i * k : (i + 1) * k]
        data = bytes(out)
    if len(data) != size:
        raise ProtocolError(f"a metric blob of {len(data)} bytes, not {size}")
    return data


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
