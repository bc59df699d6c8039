"""``optitui export``: runs' per-step metrics (or the machine's series) as CSV or JSON
lines, for pandas.

After a restore the run goes on from an earlier step, so a step can appear more
than once: every row and every validation loss carries the ``branch`` it was
recorded on (0 until the first restore, then one more at each restore, rollbacks
included), told apart by when the restore happened.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

from optitui.store import system
from optitui.store.columns import MetricColumns
from optitui.store.metrics import USER_PREFIX
from optitui.store.reader import RunReader


def branch_starts(reader: RunReader) -> list[float]:
    """When each branch after the first began: the times of the run's restores."""
    return sorted(
        e.time
        for e in reader.events()
        if e.data and e.data.get("marker") == "restore" and "from_step" in e.data
    )


#: the series recorded per param group, stored as ``<series>/<index>``
PER_GROUP = ("lr", "grad_norm", "param_norm", "update_ratio")


def _renames(names: Sequence[str], labels: Any) -> dict[str, str]:
    """Per-group columns named after their group (``lr/head``, ``update_ratio/head``), the
    user's metrics under their own names."""
    labels = labels if isinstance(labels, list) else []
    out = {}
    for name in names:
        series, _, group = name.partition("/")
        if name.startswith(USER_PREFIX):
            out[name] = name[len(USER_PREFIX) :]
        elif series in PER_GROUP and group.isdigit():
            i = int(group)
            out[name] = f"{series}/{labels[i]}" if i < len(labels) else name
    return out


def _logged_names(logged: MetricColumns) -> list[str]:
    return [n[len(USER_PREFIX) :] for n in logged.columns if n.startswith(USER_PREFIX)]


def columns(reader: RunReader) -> list[str]:
    """The names :func:`rows` gives, read without the step data (for a header over several
    runs)."""
    names = reader.metric_names()
    rename = _renames(names, reader.meta().get("groups"))
    out = ["branch", *(rename.get(n, n) for n in names)]
    return [*out, *(n for n in _logged_names(reader.read_logged()) if n not in out), "val_loss"]


def _logged(reader: RunReader, starts: list[float]) -> tuple[list[str], dict[Any, Any]]:
    """The names of values logged between steps, and (branch, step) -> {name: value}
    (the last one logged at a step wins)."""
    logged = reader.read_logged()
    names = _logged_names(logged)
    by_step: dict[tuple[int, int], dict[str, float]] = {}
    c = logged.columns
    for i in range(logged.length):
        key = (bisect.bisect_right(starts, c["time"][i]), int(c["step"][i]))
        row = by_step.setdefault(key, {})
        for name in names:
            v = c[USER_PREFIX + name][i]
            if not math.isnan(v):
                row[name] = v
    return names, by_step


def rows(reader: RunReader) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """Column names and one dict per step; ``val_loss`` is filled on evaluated steps of
    the same branch."""
    cols = reader.read_metrics()
    rename = _renames(list(cols.columns), reader.meta().get("groups"))
    starts = branch_starts(reader)
    val = {
        (bisect.bisect_right(starts, when), step): loss for step, loss, when in reader.val_times()
    }
    times = cols.columns.get("time")
    names = ["branch", *(rename.get(n, n) for n in cols.columns)]
    extra, logged = _logged(reader, starts)
    names += [n for n in extra if n not in names]
    names.append("val_loss")

    def gen() -> Iterator[dict[str, Any]]:
        series = list(cols.columns.items())
        for i in range(cols.length):
            branch = bisect.bisect_right(starts, times[i]) if starts and times else 0
            row: dict[str, Any] = {"branch": branch}
            for name, col in series:
                v = col[i]
                if name in ("step", "epoch"):
                    row[name] = int(v)
                else:
                    row[rename.get(name, name)] = None if math.isnan(v) else v
            for name, v in logged.get((branch, row["step"]), {}).items():
                if row.get(name) is None:  # a step's own value first
                    row[name] = v
            row["val_loss"] = val.get((branch, row["step"]))
            yield row

    return names, gen()


def write(reader: RunReader, out: TextIO, fmt: str) -> int:
    """Write every step's row of one run; returns the number of rows."""
    return write_runs([(None, reader)], out, fmt)


def write_runs(runs: Sequence[tuple[str | None, RunReader]], out: TextIO, fmt: str) -> int:
    """Write the rows of runs into one table, one run after the other: a ``run`` column
    names each row's run (where runs are named), the columns are every run's together
    (empty where a run has none). A run's data is read when its turn comes. Returns the
    number of rows."""
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"unknown format {fmt!r}; use csv or jsonl")
    names = ["run"] if any(label is not None for label, _ in runs) else []
    for _, reader in runs:
        names += [n for n in columns(reader) if n not in names and n != "val_loss"]
    names.append("val_loss")
    return write_table(names, ((label, rows(reader)[1]) for label, reader in runs), out, fmt)


def write_table(
    names: Sequence[str],
    runs: Iterable[tuple[str | None, Iterable[dict[str, Any]]]],
    out: TextIO,
    fmt: str,
) -> int:
    """Rows of runs under the columns ``names`` as CSV (a header, empty where a row has no
    value) or JSON lines (null there); a labelled run's rows get its label as ``run``.
    Returns the number of rows."""
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"unknown format {fmt!r}; use csv or jsonl")
    n = 0
    writer = csv.DictWriter(out, fieldnames=list(names), lineterminator="\n")
    if fmt == "csv":
        writer.writeheader()
    for label, got in runs:
        for row in got:
            full = {k: row.get(k) for k in names} | ({} if label is None else {"run": label})
            if fmt == "csv":
                writer.writerow({k: "" if v is None else v for k, v in full.items()})
            else:
                out.write(_json_line(full))
            n += 1
    return n


def _json_line(row: dict[str, Any]) -> str:
    """A row as one line of standard JSON: JSON has no infinity, so +-inf are written as
    the strings "Infinity" and "-Infinity" (as proto3's JSON mapping writes them)."""
    try:
        return json.dumps(row, allow_nan=False) + "\n"
    except ValueError:  # an infinite value (NaN is None here, written as null)
        return json.dumps({k: _finite(v) for k, v in row.items()}, allow_nan=False) + "\n"


def _finite(v: Any) -> Any:
    if isinstance(v, float) and math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def system_names(series: system.SystemSeries) -> list[str]:
    """The columns of :func:`system_rows`: rank, time, step, then every series, host first,
    each GPU's together."""
    names: list[str] = []
    for cols in series.ranks.values():
        names += [n for n in cols.columns if n not in names]
    host = [n for n in system.HOST_SERIES if n in names]
    gpu = [
        system.gpu_series(g, k)
        for g in system.gpus(names)
        for k in system.GPU_SERIES
        if system.gpu_series(g, k) in names
    ]
    rest = [n for n in names if n not in ("time", "step", *host, *gpu)]
    return ["rank", "time", "step", *host, *gpu, *rest]


def system_rows(series: system.SystemSeries) -> Iterator[dict[str, Any]]:
    """One dict per sample: each rank's samples in time order, rank 0 first; None where a
    sample lacks a series."""
    for rank in sorted(series.ranks):
        cols = series.ranks[rank]
        items = list(cols.columns.items())
        for i in range(cols.length):
            row: dict[str, Any] = {"rank": rank}
            for name, col in items:
                v = col[i]
                row[name] = None if math.isnan(v) else int(v) if name == "step" else v
            yield row


def write_system_runs(runs: Sequence[tuple[str | None, RunReader]], out: TextIO, fmt: str) -> int:
    """``optitui export --system``: the machine's series of runs as CSV or JSON lines, one
    table (a ``run`` column where runs are named). Returns the number of rows."""
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"unknown format {fmt!r}; use csv or jsonl")
    read_all = [(label, reader.read_system()) for label, reader in runs]
    names = ["run"] if any(label is not None for label, _ in runs) else []
    for _, series in read_all:
        names += [n for n in system_names(series) if n not in names]
    return write_table(names, ((lb, system_rows(sr)) for lb, sr in read_all), out, fmt)
