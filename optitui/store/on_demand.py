"""A run's metric columns read from its store a row at a time, as values are asked for.

A run that is only drawn (an overlay) shows one value per plot column: the value at the
column's last row, and its smoothed loss from the few thousand values before it. Reading
its whole history first costs a scan and a decode of every row; :class:`StoredRows` reads
the row list only (each row's id, size and column names) and fetches a row's values the
first time one of them is asked for, so a first frame reads O(plot width) rows.

A :class:`StoredColumn` is an ``array('d')`` to the code that draws (indexing, slicing,
``len``, iteration, ``bisect``), with the same values a full read gives, NaN where a row
has no such column. Rows are never changed once written, so the row list taken when the
column was made stays true however the job goes on writing. A row that cannot be read
(damaged, its disk gone) reads as NaN: values are read while a frame is drawn, which must
not fail; the whole read that follows meets the same row and says why (see
:func:`optitui.tui.feed.follow`).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import weakref
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from typing import TYPE_CHECKING, SupportsIndex, cast, overload

from optitui.store.columns import SWAP, WIDTH
from optitui.store.reader import RunReader

if TYPE_CHECKING:
    FloatArray = array[float]
else:
    FloatArray = array

#: rows kept decoded at most (a first frame of a wide plot takes a few thousand)
KEEP_ROWS = 8192
#: rows fetched by one query at most
FETCH_ROWS = 256


class StoredRows:
    """The metric rows of one run, read on demand; safe to use from any thread."""

    def __init__(self, reader: RunReader) -> None:
        """Takes ``reader`` (a reader of its own: its connection is used from any thread)
        and closes it once these rows are no longer drawn from."""
        self._reader = reader
        self._lock = threading.Lock()
        self._closed = weakref.finalize(self, reader.close)
        self.ids = array("q")
        #: the first value's index of each row, and the total after the last
        self.starts = array("q", [0])
        self._names: list[dict[str, int]] = []  # each row's column positions
        by_text: dict[str, dict[str, int]] = {}
        seen: dict[str, None] = {}
        for row_id, n, cols in reader.conn.execute(
            "SELECT id, n, columns FROM metrics ORDER BY id"
        ):
            where = by_text.get(cols)
            if where is None:
                names = json.loads(cols)
                # a name given twice keeps its last column, as a full read does
                where = by_text[cols] = {name: i for i, name in enumerate(names)}
                seen.update(dict.fromkeys(names))
            self.ids.append(row_id)
            self.starts.append(self.starts[-1] + n)
            self._names.append(where)
        #: every column's name, in the order a full read meets them
        self.names = list(seen)
        #: row position -> (n, blob), the blob None where the row cannot be read
        self._rows: dict[int, tuple[int, bytes | None]] = {}

    @property
    def length(self) -> int:
        return self.starts[-1]

    def column(self, name: str) -> StoredColumn:
        return StoredColumn(self, name)

    def values(self, name: str, start: int, stop: int) -> array[float]:
        """Values ``start`` to ``stop`` of column ``name`` (NaN where a row lacks it)."""
        out = array("d")
        if stop <= start:
            return out
        first = bisect_right(self.starts, start) - 1
        last = bisect_right(self.starts, stop - 1) - 1
        with self._lock:
            self._fetch(first, last)
            self._take(out, name, start, stop, first, last)
        return out

    def _take(
        self, out: array[float], name: str, start: int, stop: int, first: int, last: int
    ) -> None:
        for r in range(first, last + 1):
            n, blob = self._rows[r]
            a = max(start, self.starts[r]) - self.starts[r]
            b = min(stop, self.starts[r + 1]) - self.starts[r]
            k = self._names[r].get(name)
            if k is None or blob is None:
                out.extend(array("d", [math.nan]) * (b - a))
                continue
            part = array("d")
            part.frombytes(blob[(k * n + a) * WIDTH : (k * n + b) * WIDTH])
            if SWAP:
                part.byteswap()
            out.extend(part)

    def _fetch(self, first: int, last: int) -> None:
        """Have rows ``first`` to ``last`` (positions) at hand (the lock held)."""
        missing = [r for r in range(first, last + 1) if r not in self._rows]
        if not missing:
            return
        if len(self._rows) + len(missing) > KEEP_ROWS:
            self._rows.clear()
            missing = list(range(first, last + 1))
        for at in range(0, len(missing), FETCH_ROWS):
            part = missing[at : at + FETCH_ROWS]
            lo, hi = self.ids[part[0]], self.ids[part[-1]]
            try:
                got = {
                    row_id: (n, blob)
                    for row_id, n, blob in self._reader.conn.execute(
                        "SELECT id, n, data FROM metrics WHERE id BETWEEN ? AND ?", (lo, hi)
                    )
                }
            except sqlite3.Error:
                got = {}
            for r in part:
                n = self.starts[r + 1] - self.starts[r]
                _, blob = got.get(self.ids[r], (n, None))
                whole = isinstance(blob, bytes) and len(blob) == WIDTH * n * len(self._names[r])
                self._rows[r] = (n, blob if whole else None)


class StoredColumn(FloatArray):
    """One column of :class:`StoredRows`: an array whose values are read when asked for.

    The array itself holds nothing: every way of reading a value goes through the rows.
    """

    rows: StoredRows
    name: str

    def __new__(cls, rows: StoredRows, name: str) -> StoredColumn:
        self = cast(StoredColumn, super().__new__(cls, "d"))
        self.rows, self.name = rows, name
        return self

    def __len__(self) -> int:
        return self.rows.length

    @overload
    def __getitem__(self, key: SupportsIndex, /) -> float: ...
    @overload
    def __getitem__(self, key: slice, /) -> array[float]: ...
    def __getitem__(self, key: SupportsIndex | slice, /) -> float | array[float]:
        n = self.rows.length
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                return array("d", (self[i] for i in range(start, stop, step)))
            return self.rows.values(self.name, start, stop)
        i = key.__index__()
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("array index out of range")
        return self.rows.values(self.name, i, i + 1)[0]

    def __iter__(self) -> Iterator[float]:
        n = self.rows.length
        for start in range(0, n, 65536):
            yield from self.rows.values(self.name, start, min(n, start + 65536))

    def __bool__(self) -> bool:
        return self.rows.length > 0

    def __eq__(self, other: object) -> bool:
        return self is other  # comparing values would read every row

    __hash__ = None  # type: ignore[assignment]
