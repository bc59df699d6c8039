"""Metric rows read a run of rows at a time give exactly what reading them one row at a
time gave: the same columns (NaN where a column was missing), the same length and last id,
and at a row that does not decode, the same error with every row before it kept."""

from __future__ import annotations

import json
import math
import sqlite3
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optitui.remote.mirror import Mirror
from optitui.store import metrics
from optitui.store.columns import MetricColumns, extend_rows
from optitui.store.layout import create_run_dir
from optitui.store.reader import RunReader
from optitui.store.schema import connect

NAN = math.nan


# -- reading one row at a time: how every metric row was read before --------------------
def per_row(out: MetricColumns, rows: Iterable[tuple[int, int, str, bytes]]) -> MetricColumns:
    for row_id, n, cols, blob in rows:
        out.extend(metrics.decode(json.loads(cols), n, blob), n)
        out.last_id = row_id
    return out


def read_per_row(conn: sqlite3.Connection, table: str, into: MetricColumns) -> MetricColumns:
    q = f"SELECT id, n, columns, data FROM {table} WHERE id > ? ORDER BY id"
    return per_row(into, conn.execute(q, (into.last_id,)))


def same(a: MetricColumns, b: MetricColumns) -> None:
    """Equal to the bit (NaN included), in the same column order."""
    assert (a.length, a.last_id) == (b.length, b.last_id)
    assert list(a.columns) == list(b.columns)
    for name in a.columns:
        assert a.columns[name].tobytes() == b.columns[name].tobytes(), name


def outcome(read: object, into: MetricColumns) -> tuple[MetricColumns, str | None]:
    try:
        read(into)  # type: ignore[operator]
    except ValueError as exc:  # a torn row, or a column list that is not JSON
        return into, f"{type(exc).__name__}: {exc}"
    return into, None


# -- stores ------------------------------------------------------------------------------
def blank_store(tmp_path: Path) -> tuple[Path, sqlite3.Connection]:
    paths = create_run_dir(tmp_path, "cols", tmp_path / "cols")
    conn = connect(paths.db, create=True)
    return paths.root, conn


def put(
    conn: sqlite3.Connection, table: str, names: Sequence[str], cols: list[list[float]]
) -> None:
    n = len(cols[0]) if cols else 0
    buf = array("d")
    for col in cols:
        buf.extend(col)
    steps = [c for c in cols[:1]]
    first = steps[0][0] if steps and n else 0
    if table == "metrics":
        conn.execute(
            "INSERT INTO metrics (first_step, last_step, n, columns, data) VALUES (?, ?, ?, ?, ?)",
            (first, first + n, n, json.dumps(list(names)), buf.tobytes()),
        )
    else:
        conn.execute(
            "INSERT INTO logged (n, columns, data) VALUES (?, ?, ?)",
            (n, json.dumps(list(names)), buf.tobytes()),
        )


def put_raw(conn: sqlite3.Connection, n: int, cols: str, blob: bytes) -> None:
    conn.execute(
        "INSERT INTO metrics (first_step, last_step, n, columns, data) VALUES (0, 0, ?, ?, ?)",
        (n, cols, blob),
    )


def both(root: Path, table: str = "metrics") -> None:
    """Read the whole table both ways, then again after nothing new: the same each time."""
    with RunReader(root) as r:
        read = r.read_metrics if table == "metrics" else r.read_logged
        new, new_err = outcome(read, MetricColumns())
        old, old_err = outcome(lambda into: read_per_row(r.conn, table, into), MetricColumns())
        assert new_err == old_err
        same(new, old)


# -- the cases a run meets ---------------------------------------------------------------
def test_several_batches_and_a_group_added_later(tmp_path: Path) -> None:
    root, conn = blank_store(tmp_path)
    for s0 in range(1, 400, 64):
        steps = [float(s) for s in range(s0, s0 + 64)]
        put(conn, "metrics", ["step", "loss", "lr/0"], [steps, [1 / s for s in steps], [0.1] * 64])
    # a group added (lr/1), the user's metric appears, then goes again; loss renamed away
    put(conn, "metrics", ["step", "loss", "lr/0", "lr/1"], [[500.0], [0.5], [0.1], [0.01]])
    put(conn, "metrics", ["step", "user:acc", "lr/1", "loss"], [[501.0], [0.9], [0.02], [0.4]])
    put(conn, "metrics", ["step", "lr/0"], [[502.0, 503.0], [0.2, 0.3]])
    put(conn, "metrics", [], [])  # a flush with nothing in it
    put(conn, "metrics", ["step", "step", "loss"], [[504.0], [505.0], [NAN]])  # a name twice
    conn.close()
    both(root)
    with RunReader(root) as r:
        cols = r.read_metrics()
    assert cols.length == 7 * 64 + 5 and cols.last_id == 12
    assert list(cols.columns) == ["step", "loss", "lr/0", "lr/1", "user:acc"]
    assert cols.columns["step"][-1] == 505.0  # the later of the two
    assert math.isnan(cols.columns["user:acc"][0]) and cols.columns["user:acc"][-4] == 0.9
    assert list(cols.columns["lr/1"][-5:-3]) == [0.01, 0.02]


def test_torn_row_keeps_every_row_before_it(tmp_path: Path) -> None:
    root, conn = blank_store(tmp_path)
    put(conn, "metrics", ["step", "loss"], [[1.0, 2.0], [0.5, 0.4]])
    put(conn, "metrics", ["step", "loss"], [[3.0], [0.3]])
    put_raw(conn, 2, json.dumps(["step", "loss"]), array("d", [4.0, 5.0, 0.2]).tobytes())
    put(conn, "metrics", ["step", "loss"], [[6.0], [0.1]])
    conn.close()
    both(root)
    with RunReader(root) as r:
        cols = MetricColumns()
        with pytest.raises(ValueError, match="does not hold 2x2 values"):
            r.read_metrics(cols)
        assert (cols.length, cols.last_id) == (3, 2)
        assert list(cols.columns["step"]) == [1.0, 2.0, 3.0]
        with pytest.raises(ValueError):  # read again from there: the same row stops it
            r.read_metrics(cols)
        assert cols.length == 3


def test_torn_first_row_of_a_new_column_list_adds_no_column(tmp_path: Path) -> None:
    root, conn = blank_store(tmp_path)
    put(conn, "metrics", ["step"], [[1.0]])
    put_raw(conn, 1, json.dumps(["step", "lr/1"]), b"\x00" * 8)
    conn.close()
    both(root)
    with RunReader(root) as r, pytest.raises(ValueError):
        cols = MetricColumns()
        r.read_metrics(cols)
    assert list(cols.columns) == ["step"]


def test_column_list_that_is_not_json(tmp_path: Path) -> None:
    root, conn = blank_store(tmp_path)
    put(conn, "metrics", ["step"], [[1.0]])
    put_raw(conn, 1, "[step", b"\x00" * 8)
    conn.close()
    both(root)


def test_logged_table_and_incremental_reads(tmp_path: Path) -> None:
    root, conn = blank_store(tmp_path)
    put(conn, "logged", ["step", "epoch", "time", "user:eval"], [[5.0], [0.0], [1.0], [0.7]])
    both(root, "logged")
    with RunReader(root) as r:
        new, old = MetricColumns(), MetricColumns()
        for k in range(6):
            names = ["step", "epoch", "time"] + (["user:bleu"] if k % 2 else ["user:eval"])
            put(conn, "logged", names, [[6.0 + k], [0.0], [2.0], [0.1 * k]])
            r.read_logged(new)
            read_per_row(r.conn, "logged", old)
            same(new, old)
    conn.close()


# -- any sequence of rows ----------------------------------------------------------------
NAMES = ["step", "loss", "lr/0", "lr/1", "user:acc"]
ROW = st.tuples(
    st.lists(st.sampled_from(NAMES), max_size=4),  # column list (a name may repeat)
    st.integers(0, 5),  # steps
    st.sampled_from(["whole", "whole", "whole", "short", "long", "not json"]),
)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(ROW, max_size=14), cut=st.integers(0, 14))
def test_any_rows_read_as_row_by_row(rows: list[tuple[list[str], int, str]], cut: int) -> None:
    stored: list[tuple[int, int, str, bytes]] = []
    value = 0.0
    for i, (names, n, kind) in enumerate(rows):
        cols = []
        for _ in names:
            cols.append([value + j if (value + j) % 7 else NAN for j in range(n)])
            value += n
        blob = array("d", [v for c in cols for v in c]).tobytes()
        blob = {"short": blob[:-8] if blob else b"\x01", "long": blob + b"\x00" * 8}.get(kind, blob)
        stored.append((i + 1, n, "{oops" if kind == "not json" else json.dumps(names), blob))
    # read this far, then the rest on top (a reader that read before the rest arrived)
    new, new_err = outcome(lambda into: extend_rows(into, stored[:cut]), MetricColumns())
    old, old_err = outcome(lambda into: per_row(into, stored[:cut]), MetricColumns())
    assert new_err == old_err
    same(new, old)
    if new_err is None:
        new, new_err = outcome(lambda into: extend_rows(into, stored[cut:]), new)
        old, old_err = outcome(lambda into: per_row(into, stored[cut:]), old)
        assert new_err == old_err
        same(new, old)


def test_remote_mirror_takes_each_row_once() -> None:
    names = ["step", "loss"]
    rows = [
        (1, 2, names, array("d", [1.0, 2.0, 0.5, 0.4]).tobytes()),
        (2, 1, names, array("d", [3.0, 0.3]).tobytes()),
        (2, 1, names, array("d", [3.0, 0.3]).tobytes()),  # sent again after a reconnection
        (1, 2, names, array("d", [1.0, 2.0, 0.5, 0.4]).tobytes()),
        (3, 1, [*names, "lr/0"], array("d", [4.0, 0.2, 0.1]).tobytes()),
    ]
    mirror = Mirror()
    mirror._metrics = list(rows)
    got = mirror.read_metrics()
    want = per_row(
        MetricColumns(), [(i, n, json.dumps(c), b) for i, n, c, b in rows[:2] + rows[4:]]
    )
    same(got, want)
    assert list(got.columns["step"]) == [1.0, 2.0, 3.0, 4.0]


def test_extend_rows_on_names_given_as_lists() -> None:
    rows = [(1, 1, ["a"], array("d", [1.0]).tobytes()), (2, 1, ["b"], array("d", [2.0]).tobytes())]
    got = extend_rows(MetricColumns(), rows)
    want = per_row(MetricColumns(), [(i, n, json.dumps(c), b) for i, n, c, b in rows])
    same(got, want)


def test_rows_of_different_lengths_and_a_big_endian_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run of rows whose step counts change slices each row where its own n says; on a
    big-endian host each stored (little-endian) value is turned around."""

    def row(i: int, values: list[list[float]], swap: bool) -> tuple[int, int, list[str], bytes]:
        flat = array("d", [v for col in values for v in col])
        if swap:  # what a little-endian store holds, as a big-endian host reads it
            flat.byteswap()
        return (i, len(values[0]), ["a", "b"], flat.tobytes())

    values = [[[1.0, 2.0], [3.0, 4.0]], [[5.0], [6.0]], [[7.0, 8.0, 9.0], [10.0, 11.0, 12.0]]]
    for swap in (False, True):
        monkeypatch.setattr("optitui.store.columns.SWAP", swap)
        got = extend_rows(MetricColumns(), [row(i + 1, v, swap) for i, v in enumerate(values)])
        assert got.length == 6 and got.last_id == 3
        assert list(got.columns["a"]) == [1.0, 2.0, 5.0, 7.0, 8.0, 9.0]
        assert list(got.columns["b"]) == [3.0, 4.0, 6.0, 10.0, 11.0, 12.0]
