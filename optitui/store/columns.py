"""Metric rows read into growing columns, a run of rows at a time.

A metric row holds one flush's steps as k consecutive float64 arrays (see
:mod:`optitui.store.metrics`). Each column's bytes go straight from the row into
the growing column (one copy, no array per row, no dict per row), and columns
missing from a run of rows with the same column list are filled with NaN once
per run, so reading a million steps costs one call per row and column, never a
Python call per value. A row that cannot be decoded stops the read there: every
row before it is kept (and ``last_id`` points at the last of them), then the
error is raised, exactly as reading row by row would.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from optitui.store import metrics

#: bytes per stored value (little-endian float64)
WIDTH = 8
#: stored values are little-endian: a big-endian host turns each one around
SWAP = sys.byteorder != "little"
#: one stored row: id, steps in it, its column names (the stored JSON list, or the names
#: themselves), its blob
Row = tuple[int, int, "str | Sequence[str]", bytes]


@dataclass
class MetricColumns:
    """Columns of per-step metrics, extended in place by :func:`extend_rows`."""

    columns: dict[str, array[float]] = field(default_factory=dict)
    length: int = 0
    last_id: int = 0

    def extend(self, new: dict[str, array[float]], n: int) -> None:
        for name in [k for k in new if k not in self.columns]:
            # a column that appears later (a new group) is NaN before it existed
            self.columns[name] = array("d", [metrics.NAN]) * self.length
        for name, col in self.columns.items():
            if name in new:
                col.extend(new[name])
            else:
                col.extend(array("d", [metrics.NAN]) * n)
        self.length += n


class _Run:
    """Consecutive rows with one column list, appended to ``out``'s columns as they come."""

    def __init__(self, out: MetricColumns, names: Sequence[str]) -> None:
        self.out = out
        self.k = len(names)
        # a name given twice keeps its last column, as a dict built from the list does
        self.index = {name: i for i, name in enumerate(names)}
        self.targets: list[tuple[int, array[float]]] = []
        self.missing: list[array[float]] = []
        self.steps = 0
        self.last_id: int | None = None
        # where each target's values lie in a row of n steps: the run's rows mostly share
        # one n, so the slices are made once, not per row and column
        self.n = -1
        self.parts: list[tuple[Callable[[bytes], None], slice]] = []

    def _start(self) -> None:
        """Once the run's first row decodes: its new columns, NaN before they appeared."""
        cols = self.out.columns
        for name in self.index:
            if name not in cols:
                cols[name] = array("d", [metrics.NAN]) * self.out.length
        self.targets = [(i, cols[name]) for name, i in self.index.items()]
        self.missing = [col for name, col in cols.items() if name not in self.index]

    def add(self, row_id: int, n: int, blob: bytes) -> None:
        size = WIDTH * n
        if len(blob) != size * self.k:
            raise ValueError(f"metric blob of {len(blob)} bytes does not hold {n}x{self.k} values")
        if self.last_id is None:
            self._start()
        if n != self.n:
            self.n = n
            self.parts = [
                (_swapping(col) if SWAP else col.frombytes, slice(i * size, (i + 1) * size))
                for i, col in self.targets
            ]
        for extend, part in self.parts:
            extend(blob[part])
        self.steps += n
        self.last_id = row_id

    def end(self) -> None:
        """Bring the columns this run has none of to the new length (NaN)."""
        if self.last_id is None:
            return
        for col in self.missing:
            col.extend(array("d", [metrics.NAN]) * self.steps)
        self.out.length += self.steps
        self.out.last_id = self.last_id


def _swapping(col: array[float]) -> Callable[[bytes], None]:
    """Appends little-endian float64 bytes to ``col`` on a big-endian host."""

    def extend(data: bytes) -> None:
        part = array("d", data)
        part.byteswap()
        col.extend(part)

    return extend


def newer_rows(rows: Iterable[Row], after_id: int) -> Iterator[Row]:
    """The rows each newer than every row before it and than ``after_id`` (rows a
    reconnection sent twice are taken once)."""
    for row in rows:
        if row[0] > after_id:
            after_id = row[0]
            yield row


def extend_rows(out: MetricColumns, rows: Iterable[Row]) -> MetricColumns:
    """Append ``rows`` (oldest first) to ``out``; raises ValueError at the first row that
    does not decode, with every row before it appended."""
    key: object = None
    run: _Run | None = None
    try:
        for row_id, n, cols, blob in rows:
            if run is None or cols != key:
                if run is not None:
                    run.end()
                run = None
                names = json.loads(cols) if isinstance(cols, str | bytes) else cols
                run, key = _Run(out, names), cols
            run.add(row_id, n, blob)
    finally:
        if run is not None:
            run.end()
    return out
