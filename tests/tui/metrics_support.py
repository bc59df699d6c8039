"""Fixed run stores with the user's own metrics, for the metrics screen's tests."""

from __future__ import annotations

import math
from pathlib import Path

from tui_support import (
    FIXED_NOW,
    loss_at,
    metric_batches,
    set_heartbeat,
    step_time,
    write_fixed_store,
)

from optitui.store.layout import RunPaths
from optitui.store.records import (
    Event,
    LoggedBatch,
    MetricBatch,
    Record,
    StatusUpdate,
    SystemBatch,
    ValRecord,
)


def acc_at(step: int) -> float:
    return 0.95 - 0.85 * math.exp(-step / 150.0) + 0.01 * math.sin(step * 0.9)


def per_step(
    first: int, last: int, extra: dict[str, float] | None = None, worse: float = 1.0
) -> list[MetricBatch]:
    """The user's per-step metrics (acc, train/tokens_per_s, one that is all NaN, one with
    markup in its name) and the gradient norm, as the trainer's flushes write them."""
    out = []
    for s0 in range(first, last + 1, 64):
        steps = range(s0, min(s0 + 64, last + 1))
        cols: dict[str, list[float]] = {
            "step": [float(s) for s in steps],
            "user:acc": [acc_at(s) / worse for s in steps],
            "user:train/tokens_per_s": [5000 + 400 * math.sin(s / 40.0) for s in steps],
            "user:[bold]odd": [math.nan for _ in steps],
            "grad_norm": [worse * 20 * math.exp(-s / 80.0) + 0.05 for s in steps],
        }
        for name, v in (extra or {}).items():
            cols[name] = [v for _ in steps]
        out.append(MetricBatch(cols))
    return out


def logged(steps: range, worse: float = 1.0) -> list[Record]:
    """val_acc and val_f1 at each validation, and one value logged once at step 450 (a
    chart of a single point), in step order as a job logs them."""
    rows: list[tuple[int, dict[str, list[float]]]] = [
        (s, {"user:val_acc": [acc_at(s) / worse - 0.03], "user:val_f1": [acc_at(s) - 0.08]})
        for s in steps
    ]
    rows.append((450, {"user:test/once": [0.5]}))
    rows.sort(key=lambda r: r[0])
    base = {"step": [0.0], "epoch": [0.0], "time": [0.0]}
    return [
        LoggedBatch({**base, "step": [float(s)], "time": [step_time(s)], **cols})
        for s, cols in rows
    ]


def machine(samples: int = 60, gpus: int = 2) -> list[Record]:
    """The machine's series every 2 s up to FIXED_NOW: the job's CPU and memory, the
    host's, and ``gpus`` GPUs (the second one mostly idle)."""
    t = [FIXED_NOW - 2.0 * (samples - i) for i in range(samples)]
    cols: dict[str, list[float]] = {
        "time": t,
        "step": [10.0 * i for i in range(samples)],
        "cpu_percent": [100 + 60 * math.sin(i / 5.0) for i in range(samples)],
        "rss_bytes": [2.1 * 2**30 + 2**24 * i for i in range(samples)],
        "host_mem_used_bytes": [12.5 * 2**30 for _ in range(samples)],
        "host_mem_total_bytes": [24 * 2**30 for _ in range(samples)],
    }
    for g in range(gpus):
        busy = 85.0 if g == 0 else 12.0
        cols[f"gpu{g}/util_percent"] = [busy + 8 * math.sin(i / 3.0) for i in range(samples)]
        cols[f"gpu{g}/mem_used_bytes"] = [(30.0 - 20 * g) * 2**30 for _ in range(samples)]
        cols[f"gpu{g}/mem_total_bytes"] = [80.0 * 2**30 for _ in range(samples)]
        cols[f"gpu{g}/temp_c"] = [61.0 - 20 * g for _ in range(samples)]
        cols[f"gpu{g}/power_w"] = [310.0 - 200 * g for _ in range(samples)]
    return [SystemBatch(0, cols)]


def write_metrics_store(run_dir: Path, steps: int = 600, worse: float = 1.0) -> RunPaths:
    """The fixed run (loss, two groups, a change and a spike at step 300) with metrics,
    validation metrics, a checkpoint saved at 450 and a range test at 500 (``worse``: its
    accuracies that much lower, its gradient norm that much higher)."""
    paths, writer = write_fixed_store(run_dir, steps=0, keep_open=True)
    assert writer is not None
    records: list[Record] = [
        MetricBatch({**a.columns, **b.columns})
        for a, b in zip(
            metric_batches(1, steps, 1000), per_step(1, steps, worse=worse), strict=True
        )
    ]
    records += [
        ValRecord(s, s // 100, loss_at(s) + 0.1, step_time(s)) for s in range(100, steps + 1, 100)
    ]
    records += logged(range(100, steps + 1, 100), worse)
    records += machine()
    records += [
        Event(
            300,
            "command",
            "scale-lr 1.1 group=1: applied after step 300",
            {"kind": "scale-lr", "args": {"factor": 1.1, "group": 1}},
        ),
        Event(320, "warning", "loss spike at step 320", {"marker": "spike"}),
        Event(450, "checkpoint", "saved step 450 (manual)", {"marker": "save", "id": "c450"}),
        Event(500, "info", "range test 4f2a started", {"marker": "lr-find", "id": "4f2a"}),
        StatusUpdate("running", steps, steps // 100, 123.4, 7897.6, None, FIXED_NOW - 3.0),
    ]
    writer.write(records)
    writer.close()
    set_heartbeat(paths, FIXED_NOW - 1.0)
    return paths
