"""The machine's series: what the job's sampler thread records every 2 s, for each rank.

Stored in the ``system`` table, one row per batch of ``n`` samples of one rank, columnar
as the step metrics are (:mod:`optitui.store.metrics`: k float64 arrays in one BLOB).
The column names, as stored, read back by :func:`read` (or
:meth:`RunReader.read_system <optitui.store.reader.RunReader.read_system>`) and
exported by ``optitui export RUN --system``:

=========================  ==========================================================
``time``                   unix time of the sample
``step``                   optimizer steps done when it was taken
``cpu_percent``            the job's process CPU time over the interval, % of one core
                           (all threads: 250 means two and a half cores busy)
``rss_bytes``              the job's process resident memory
``host_mem_used_bytes``    the host's memory in use (total less available)
``host_mem_total_bytes``   the host's memory
``gpu<N>/util_percent``    GPU N's utilisation (NVML: time a kernel ran, last period)
``gpu<N>/mem_used_bytes``  GPU N's memory in use, by every process on it
``gpu<N>/mem_total_bytes`` GPU N's memory
``gpu<N>/temp_c``          GPU N's temperature, degrees Celsius
``gpu<N>/power_w``         GPU N's power draw, watts
=========================  ==========================================================

``N`` is the CUDA ordinal as the rank sees it (``--device cuda:N``, after
``CUDA_VISIBLE_DEVICES``). A single-process job on a GPU records every GPU it can see;
under torchrun each rank records its own GPU only. A field that cannot be read here
(no ``nvidia-ml-py``, no GPU, no ``/proc``, a field the GPU does not report) is absent:
its column is missing from the batch, which reads as NaN beside batches that have it.

The newest sample of rank 0 is also kept in the run's metadata under ``system`` (a
mapping of these names to numbers, plus ``rank``), and under torchrun every rank's
newest one in its entry of ``ranks``: what a status line shows without reading series;
``system_gpus`` names the GPUs rank 0 watches (CUDA's ordinal, name, size, UUID).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

from optitui.store import metrics
from optitui.store.columns import MetricColumns

#: seconds between two samples
INTERVAL_S = 2.0
#: the host and process series every platform with /proc has
HOST_SERIES = (
    "cpu_percent",
    "rss_bytes",
    "host_mem_used_bytes",
    "host_mem_total_bytes",
)
#: each GPU's series, as ``gpu<N>/<name>``
GPU_SERIES = ("util_percent", "mem_used_bytes", "mem_total_bytes", "temp_c", "power_w")
#: the metadata key holding rank 0's newest sample
META_KEY = "system"
#: the metadata key naming the GPUs rank 0 watches: ``ordinal``, ``name``, ``total_mib``,
#: ``uuid`` of each (CUDA's view)
GPUS_META_KEY = "system_gpus"


def gpu_series(ordinal: int, name: str) -> str:
    """The stored name of GPU ``ordinal``'s series ``name`` (one of :data:`GPU_SERIES`)."""
    return f"gpu{ordinal}/{name}"


def gpus(names: list[str] | dict[str, object]) -> list[int]:
    """The GPU ordinals that have series among ``names``, in order."""
    found = set()
    for name in names:
        head, sep, tail = name.partition("/")
        if sep and tail in GPU_SERIES and head.startswith("gpu") and head[3:].isdigit():
            found.add(int(head[3:]))
    return sorted(found)


@dataclass
class SystemSeries:
    """Every rank's machine series, extended in place by :func:`read`."""

    ranks: dict[int, MetricColumns] = field(default_factory=dict)
    last_id: int = 0

    def latest(self, rank: int = 0) -> dict[str, float]:
        """The newest sample of ``rank`` (its fields that are not NaN); empty before one."""
        cols = self.ranks.get(rank)
        if cols is None or not cols.length:
            return {}
        return {k: v[-1] for k, v in cols.columns.items() if v[-1] == v[-1]}


def read(conn: sqlite3.Connection, into: SystemSeries | None = None) -> SystemSeries:
    """Append every ``system`` row newer than ``into.last_id`` (all rows when None); a store
    made before the machine was recorded reads as empty."""
    out = into if into is not None else SystemSeries()
    q = "SELECT id, rank, n, columns, data FROM system WHERE id > ? ORDER BY id"
    try:
        rows = conn.execute(q, (out.last_id,)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return out
        raise
    names: dict[str, list[str]] = {}
    for row_id, rank, n, cols, blob in rows:
        got = names.get(cols)
        if got is None:
            got = names[cols] = json.loads(cols)
        out.ranks.setdefault(int(rank), MetricColumns()).extend(metrics.decode(got, n, blob), n)
        out.last_id = row_id
    return out
