"""A fixed 20,000-step run store: an initial loss spike, routine checkpoint saves every
200 steps, one unnamed param group, a warning and a command late in the run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tui_support import FIXED_NOW, STEPS_PER_S, fixed_controls, set_heartbeat, sgd_groups

from optitui.store.layout import RunPaths, create_run_dir
from optitui.store.records import (
    Event,
    GroupSnapshot,
    MetricBatch,
    Record,
    StatusUpdate,
    ValRecord,
)
from optitui.store.writer import StoreWriter

STEPS = 20_000
SAVE_EVERY = 200
LAST_COMMAND = "set lr=0.01 group=0: applied after step 19900"


def loss_at(step: int) -> float:
    """50 at step 1, back under 1 by step 25, then a slow descent to about 0.01."""
    spike = 50.0 * math.exp(-(step - 1) / 6.0)
    return spike + 0.01 + 0.3 * math.exp(-step / 1500.0) + 0.003 * math.sin(step * 1.7) ** 2


def val_at(step: int) -> float:
    return 0.012 + 0.3 * math.exp(-step / 1500.0) + 0.0006 * math.sin(step / 900.0)


def step_time(step: int) -> float:
    """The newest step was recorded 3 s before the fixed clock's now."""
    return FIXED_NOW - 3.0 - (STEPS - step) / STEPS_PER_S


def write_long_store(run_dir: Path) -> RunPaths:
    paths = create_run_dir(run_dir.parent, run_dir.name, run_dir)
    group: dict[str, Any] = {**sgd_groups((0.05,))[0], "name": "0"}  # as a job names it
    meta = {
        "host": "fixed-host",
        "start": step_time(0),
        "device": "cpu",
        "optimizer": "SGD",
        "max_steps": 40_000,
        "groups": ["0"],
        "script": "/fixed/regression.py",
        "mode": "headless",
        "controls": fixed_controls(),
    }
    w = StoreWriter(paths, meta)
    records: list[Record] = [GroupSnapshot(0, [group], time=step_time(0))]
    for s0 in range(1, STEPS + 1, 64):
        steps = range(s0, min(s0 + 64, STEPS + 1))
        cols = {
            "step": [float(s) for s in steps],
            "epoch": [float(s // 1000) for s in steps],
            "time": [step_time(s) for s in steps],
            "loss": [loss_at(s) for s in steps],
            "lr/0": [0.0005 + 0.0495 * (1 + math.cos(math.pi * s / 40_000)) / 2 for s in steps],
        }
        records.append(MetricBatch(cols))
    best = math.inf
    events: list[Event] = []
    for s in range(SAVE_EVERY, STEPS + 1, SAVE_EVERY):
        val = val_at(s)
        records.append(ValRecord(s, s // 1000, val, time=step_time(s)))
        reason = "best" if val < best else "periodic"
        best = min(best, val)
        cid = f"step{s:08d}-{reason}-0000"
        data = {"marker": "save", "id": cid, "reason": reason, "tag": None, "val": val}
        events.append(Event(s, "checkpoint", f"saved {cid} ({reason})", data))
    events.append(Event(5_000, "warning", "loss spike at step 5000: 0.09 (3.1x recent min)"))
    args = {"values": {"lr": 0.01}, "group": 0}
    events.append(Event(19_900, "command", LAST_COMMAND, {"kind": "set", "args": args}))
    records += sorted(events, key=lambda e: e.step)
    records.append(
        StatusUpdate(
            "running",
            STEPS,
            STEPS // 1000,
            steps_per_s=STEPS_PER_S,
            last_record=FIXED_NOW - 3.0,
        )
    )
    w.write(records)
    w.close()
    set_heartbeat(paths, FIXED_NOW - 1.0)
    return paths


def best_save() -> tuple[int, float]:
    """The step and validation loss of the newest best save."""
    vals = {s: val_at(s) for s in range(SAVE_EVERY, STEPS + 1, SAVE_EVERY)}
    step = min(vals, key=lambda s: (vals[s], s))
    return step, vals[step]
