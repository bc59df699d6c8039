"""The machine's newest sample, in words for one line: the job's GPU (its utilisation and
memory) on a GPU run, the process's CPU and resident memory on a CPU run.

Samples are the mappings of :mod:`optitui.store.system`'s series names the job keeps in
its metadata (rank 0's under ``system``, every rank's in its ``ranks`` entry).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from optitui.console.machine import numbers
from optitui.store.system import GPU_SERIES, gpu_series, gpus
from optitui.tui import fmt

#: a GPU busy less than this % of the time is shown as underused (a data-bound loop, a
#: rank waiting on the others)
LOW_UTIL = 30.0


def sample(found: Any) -> dict[str, float]:
    """The finite numbers of a sample read from metadata (anything else dropped)."""
    return numbers(found)


def gpu_ordinal(device: str, got: dict[str, float]) -> int | None:
    """The GPU a sample speaks for: the job's ``cuda:N`` when it has that GPU's series,
    else the only GPU it has (a rank's own); None on a CPU run."""
    found = gpus(list(got))
    head, _, index = device.partition(":")
    if head == "cuda" and index.isdigit() and int(index) in found:
        return int(index)
    return found[0] if len(found) == 1 else None


def utilisation(device: str, got: dict[str, float]) -> float | None:
    """The GPU's utilisation in %, when the sample has it."""
    n = gpu_ordinal(device, got)
    return None if n is None else got.get(gpu_series(n, "util_percent"))


def describe(device: str, got: dict[str, float], *, label: bool = True) -> Text:
    """``GPU0 87% 31.2/80.0 GiB`` (underused in yellow), or ``CPU 180% RSS 1.2 GiB``; empty
    when the sample has neither."""
    t = Text(no_wrap=True, end="")
    n = gpu_ordinal(device, got)
    if n is not None:
        util, used, total = (got.get(gpu_series(n, k)) for k in GPU_SERIES[:3])
        if util is None and used is None:
            return t
        if label:
            t.append(f"GPU{n} ")
        if util is not None:
            t.append(f"{util:.0f}%", "bold yellow" if util < LOW_UTIL else "")
        if used is not None:
            t.append(" " if util is not None else "")
            t.append(_pair(used, total) if total else fmt.nbytes(int(used)))
        return t
    cpu, rss = got.get("cpu_percent"), got.get("rss_bytes")
    if cpu is not None:
        t.append(f"CPU {cpu:.0f}%")
    if rss is not None:
        t.append(f"{' ' if cpu is not None else ''}RSS {fmt.nbytes(int(rss))}")
    return t


def _pair(used: float, total: float) -> str:
    """``31.2/80.0 GiB``: both in the total's unit."""
    unit, size = ("GiB", 2**30) if total >= 2**30 else ("MiB", 2**20)
    return f"{used / size:.1f}/{total / size:.1f} {unit}"
