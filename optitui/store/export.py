"""``optitui export``: a run's per-step metrics as CSV or JSON lines, for pandas."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from typing import Any, TextIO

from optitui.store.reader import RunReader


def rows(reader: RunReader) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """Column names and one dict per step; ``val_loss`` is filled on evaluated steps."""
    cols = reader.read_metrics()
    labels = reader.meta().get("groups") or []
    rename = {}
    for name in cols.columns:
        if name.startswith("lr/"):
            i = int(name[3:])
            label = labels[i] if i < len(labels) else str(i)
            rename[name] = f"lr/{label}"
    val = {step: loss for _, step, _, loss in reader.val()}
    names = [rename.get(n, n) for n in cols.columns] + ["val_loss"]

    def gen() -> Iterator[dict[str, Any]]:
        series = list(cols.columns.items())
        for i in range(cols.length):
            row: dict[str, Any] = {}
            for name, col in series:
                v = col[i]
                if name in ("step", "epoch"):
                    row[name] = int(v)
                else:
                    row[rename.get(name, name)] = None if math.isnan(v) else v
            row["val_loss"] = val.get(row["step"])
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
