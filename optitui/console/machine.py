"""The machine's newest sample as one line of ``optitui status``: each GPU the job
watches (utilisation, memory, temperature, power), the process (CPU, RSS), the host's
memory. Read from the run's metadata (:mod:`optitui.store.system`)."""

from __future__ import annotations

import math
from typing import Any

from optitui.store.system import gpu_series, gpus


def numbers(found: Any) -> dict[str, float]:
    """The finite numbers of a sample read from metadata (anything else dropped: a store
    is input like any other)."""
    if not isinstance(found, dict):
        return {}
    return {
        k: float(v)
        for k, v in found.items()
        if isinstance(k, str)
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
    }


def newest(meta: dict[str, Any]) -> dict[str, float] | None:
    """Rank 0's newest sample, or None before the first."""
    return numbers(meta.get("system")) or None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f}"


def line(got: dict[str, float]) -> str:
    """``GPU0 97% 31.2/80.0 GiB 64°C 310 W · CPU 101% RSS 3.5 GiB · host 2.4/23.5 GiB``."""
    parts = []
    for n in gpus(list(got)):
        util, used, total, temp, power = (
            got.get(gpu_series(n, k))
            for k in ("util_percent", "mem_used_bytes", "mem_total_bytes", "temp_c", "power_w")
        )
        words = [f"GPU{n}"]
        if util is not None:
            words.append(f"{util:.0f}%")
        if used is not None:
            words.append(f"{_gib(used)}/{_gib(total)} GiB" if total else f"{_gib(used)} GiB")
        if temp is not None:
            words.append(f"{temp:.0f}°C")
        if power is not None:
            words.append(f"{power:.0f} W")
        parts.append(" ".join(words))
    process = []
    if "cpu_percent" in got:
        process.append(f"CPU {got['cpu_percent']:.0f}%")
    if "rss_bytes" in got:
        process.append(f"RSS {_gib(got['rss_bytes'])} GiB")
    if process:
        parts.append(" ".join(process))
    used, total = got.get("host_mem_used_bytes"), got.get("host_mem_total_bytes")
    if used is not None and total:
        parts.append(f"host {_gib(used)}/{_gib(total)} GiB")
    return " · ".join(parts)
