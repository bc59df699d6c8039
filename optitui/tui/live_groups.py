"""The group table's values as the job has them now, not as its last snapshot had them.

A group snapshot is written when something changes the groups (an edit, a restore, a
ramp's end), but a scheduler, a ramp or the script moves the lr at every step, and every
step's lr is in the metrics. So the table shows the lr of the newest recorded step once
there is a step newer than the snapshot, and the editor starts from that value.
"""

from __future__ import annotations

import math
from typing import Any

from optitui.tui.history import HistoryView


def latest_lrs(view: HistoryView) -> dict[int, float]:
    """Each group's lr at the newest recorded step (finite values only)."""
    out: dict[int, float] = {}
    for i, col in view.lrs:
        if col.length:
            v = col.raw[col.length - 1]
            if math.isfinite(v):
                out[i] = v
    return out


#: how far back the newest update ratio is looked for (the measurements' interval is 16)
RATIO_LOOKBACK = 4096


def latest_ratios(view: HistoryView) -> dict[int, float]:
    """Each group's newest measured update ratio ||dw||/||w|| (NaN rows were not measured)."""
    out: dict[int, float] = {}
    for i, col in view.ratios:
        for k in range(view.length - 1, max(view.length - RATIO_LOOKBACK, 0) - 1, -1):
            if k < len(col) and not math.isnan(col[k]):
                out[i] = col[k]
                break
    return out


def with_ratios(groups: list[dict[str, Any]], ratios: dict[int, float]) -> list[dict[str, Any]]:
    """``groups`` with each group's newest update ratio under ``update_ratio`` (copies)."""
    if not ratios:
        return groups
    return [{**g, "update_ratio": ratios[i]} if i in ratios else g for i, g in enumerate(groups)]


def rows_before(view: HistoryView, snapshot_step: int, first: bool) -> int:
    """How many recorded rows are older than a snapshot that just arrived.

    Later on, every row read so far was written before the snapshot was read. In the
    first read (attaching to a run), the snapshot's step tells: rows of the current
    branch after that step came after it."""
    if not first:
        return view.length
    start = view.breaks[-1] if view.breaks else 0
    if start >= view.length:
        return view.length
    # within a branch the step grows by one per row
    i = start + int(snapshot_step - view.step[start]) + 1
    return min(max(i, start), view.length)


def with_live_lr(groups: list[dict[str, Any]], lrs: dict[int, float]) -> list[dict[str, Any]]:
    """``groups`` with each lr replaced by the newest recorded one (copies; the snapshot
    is left as it was)."""
    out = []
    for i, g in enumerate(groups):
        values = g.get("values") or {}
        if i in lrs and "lr" in values and values["lr"] != lrs[i]:
            g = {**g, "values": {**values, "lr": lrs[i]}}
        out.append(g)
    return out


def schedule_note(group: dict[str, Any], controls: dict[str, Any]) -> str | None:
    """What an lr edit becomes on this group: a multiplier on a schedule, or None when
    the value typed is simply the new lr."""
    m = group.get("lr_multiplier") or 1.0
    now = f" (x{m:.4g} now)" if m != 1.0 else ""
    if controls.get("scheduler_attached") is False:
        return None
    if group.get("lr_by_script"):
        return (
            f"the script writes this lr every step: the value sets a multiplier{now} "
            "on the script's own values from now on"
        )
    sched = controls.get("scheduler")
    if sched and sched != "ReduceLROnPlateau":
        return (
            f"the lr follows {sched}: the value sets a multiplier{now} on the schedule "
            "from now on (d detaches it to set the lr itself)"
        )
    return None
