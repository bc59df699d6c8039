"""``optitui export``: a run's per-step metrics as CSV or JSON lines, for pandas.

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
from collections.abc import Iterator
from typing import Any, TextIO

from optitui.store.reader import RunReader


def branch_starts(reader: RunReader) -> list[float]:
    """When each branch after the first began: the times of the run's restores."""
    return sorted(
        e.time
        for e in reader.events()
        if e.data and e.data.get("marker") == "restore" and "from_step" in e.data
    )


def rows(reader: RunReader) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """Column names and one dict per step; ``val_loss`` is filled on evaluated steps of
    the same branch."""
    cols = reader.read_metrics()
    labels = reader.meta().get("groups") or []
    rename = {}
    for name in cols.columns:
        if name.startswith("lr/"):
            i = int(name[3:])
            label = labels[i] if i < len(labels) else str(i)
            rename[name] = f"lr/{label}"
    starts = branch_starts(reader)
    val = {
        (bisect.bisect_right(starts, when), step): loss for step, loss, when in reader.val_times()
    }
    times = cols.columns.get("time")
    names = ["branch", *(rename.get(n, n) for n in cols.columns), "val_loss"]

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
            row["val_loss"] = val.get((branch, row["step"]))
            yield row

    return names, gen()


def write(reader: RunReader, out: TextIO, fmt: str) -> int:
    """Write every step's row; returns the number of rows."""
    names, it = rows(reader)
    n = 0
    if fmt == "csv":
        w = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
        w.writeheader()
        for row in it:
            w.writerow({k: "" if v is None else v for k, v in row.items()})
            n += 1
    elif fmt == "jsonl":
        for row in it:
            out.write(json.dumps(row) + "\n")
            n += 1
    else:
        raise ValueError(f"unknown format {fmt!r}; use csv or jsonl")
    return n
