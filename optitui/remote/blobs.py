"""How a metric row's columns travel: bit for bit, in as few bytes as cheaply possible.

A row is k columns of n little-endian float64 (``optitui.store.metrics``). Each
column is sent as one of three kinds, compared byte for byte, never rounded:

- ``c``: one value repeated (an lr without a schedule, the epoch): 8 bytes;
- ``r``: whole numbers counting up by one (the step): its first value, 8 bytes;
- ``v``: anything else: all n values.

The kept bytes may then be packed: grouped by significance (every value's first
byte, then every second byte, ...) and deflated, which shrinks what is left of
a live run to a fraction; a server packs only a live run's few new rows, since
deflating a long backlog costs more time than a fast link saves. Then the
bytes travel as they are, after the message's line.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from optitui.remote.protocol import ProtocolError

KINDS = "crv"


def _counting(first: float, n: int) -> bytes | None:
    """The n little-endian float64 values first, first + 1, ... (None: not whole numbers)."""
    if not first.is_integer() or abs(first) + n >= 2**53:
        return None
    start = int(first)
    return struct.pack(f"<{n}d", *range(start, start + n))


def _counts(col: bytes, n: int) -> bool:
    """Whether a column may count up by one: its ends say so (cheap; the bytes decide)."""
    first, last = struct.unpack("<d", col[:8])[0], struct.unpack("<d", col[-8:])[0]
    return bool(last - first == n - 1)


def size(kinds: str, n: int) -> int:
    """The bytes a row of these kinds sends."""
    return 8 * (n * kinds.count("v") + kinds.count("c") + kinds.count("r"))


def encode(blob: bytes, n: int, k: int) -> tuple[str, bytes]:
    """(kinds, bytes to send) of a row of ``k`` columns of ``n`` values."""
    width = 8 * n
    kinds, kept = [], []
    for j in range(k):
        col = blob[j * width : (j + 1) * width]
        first = col[:8]
        if col == first * n:
            kinds.append("c")
            kept.append(first)
        elif _counts(col, n) and col == _counting(struct.unpack("<d", first)[0], n):
            kinds.append("r")
            kept.append(first)
        else:
            kinds.append("v")
            kept.append(col)
    return "".join(kinds), b"".join(kept)


def decode(data: bytes, kinds: Any, n: int, k: int) -> bytes:
    """The row :func:`encode` sent, bit for bit; ProtocolError for anything else."""
    if not isinstance(kinds, str) or len(kinds) != k or kinds.strip(KINDS):
        raise ProtocolError(f"column kinds {str(kinds)[:40]!r} for {k} columns")
    if not 0 < n <= 1 << 20:
        raise ProtocolError(f"a metric row of {n} steps")
    if len(data) != size(kinds, n):
        raise ProtocolError(f"a metric row of {len(data)} bytes, not {size(kinds, n)}")
    out, at = [], 0
    for kind in kinds:
        if kind == "v":
            out.append(data[at : at + 8 * n])
            at += 8 * n
            continue
        first = data[at : at + 8]
        at += 8
        if kind == "c":
            out.append(first * n)
        else:
            col = _counting(struct.unpack("<d", first)[0], n)
            if col is None:
                raise ProtocolError("a counting column that does not start at a whole number")
            out.append(col)
    return b"".join(out)


def pack(data: bytes) -> bytes:
    """Bytes grouped by significance (every value's first byte, then every second...)
    and deflated: a live run's rows shrink to a fraction."""
    return zlib.compress(b"".join(data[i::8] for i in range(8)), 1)


def unpack(data: Any, size: int) -> bytes:
    """What :func:`pack` packed, ``size`` bytes of it; ProtocolError for anything else."""
    if not isinstance(data, bytes) or size % 8:
        raise ProtocolError("a packed payload of the wrong shape")
    inflate = zlib.decompressobj()
    try:
        grouped = inflate.decompress(data, size + 1)  # never more than the rows hold
    except zlib.error as exc:
        raise ProtocolError(f"a packed payload that does not inflate: {exc}") from None
    if len(grouped) != size or inflate.unconsumed_tail:
        raise ProtocolError(f"a packed payload that is not {size} bytes")
    per = size // 8
    out = bytearray(size)
    for i in range(8):
        out[i::8] = grouped[i * per : (i + 1) * per]
    return bytes(out)
