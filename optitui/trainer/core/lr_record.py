"""The lr each step used, recorded without a host-device sync.

A float lr is kept as it is. A tensor lr (capturable and fused optimizers,
``Adam(lr=torch.tensor(...))``) is updated in place by the scheduler and by
optitui's own edits, so keeping a reference would make every step of a flush
show the last value. Each step's tensor lrs are therefore stacked into a new
small tensor on their own device (a copy the device runs in order, no sync),
and the whole flush's stack is read with one ``tolist()`` per device.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter, is_, itemgetter
from typing import Any, NamedTuple

import torch


class LrRow(NamedTuple):
    """One step's lrs: ``floats[i]`` for float lrs; ``stacks`` holds, per device, the
    group indices and a 1-D tensor of their values at that step. (A tuple: one is made
    every step, and a tuple is the cheapest object to make.)"""

    floats: list[float]
    stacks: tuple[tuple[tuple[int, ...], torch.Tensor], ...] = ()


_LR = itemgetter("lr")
_FLOATS, _STACKS = attrgetter("floats"), attrgetter("stacks")


def same_lrs(groups: Sequence[dict[str, Any]], held: Sequence[Any]) -> bool:
    """Whether every group's lr is still the very object ``held`` has for it (compared in
    C: no Python loop on the per-step path). A float cannot change in place, so any write,
    even of an equal value, puts a new object there."""
    return len(held) == len(groups) and all(map(is_, map(_LR, groups), held))


def _value_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # mps has no float64


def snapshot(groups: Sequence[dict[str, Any]], last: LrRow | None = None) -> LrRow:
    """Every group's lr now; tensor lrs copied on their device, nothing read back.

    ``last`` (the row of the step before) comes back as it is when it holds no tensor
    and every group's lr is still the very object it holds: a float cannot change in
    place, so nothing moved (every step between two scheduler steps or edits). Any
    write, even of an equal value, puts a new object there and takes a new row."""
    if last is not None and not last.stacks and same_lrs(groups, last.floats):
        return last
    plain = [g["lr"] for g in groups]
    for v in plain:
        if type(v) is not float:
            break
    else:  # every lr a float: the common case, a list and a tuple per step
        return LrRow(plain)
    floats: list[float] = []
    by_device: dict[torch.device, list[int]] = {}
    for i, g in enumerate(groups):
        lr = g["lr"]
        if isinstance(lr, torch.Tensor):
            by_device.setdefault(lr.device, []).append(i)
            floats.append(0.0)  # filled in when the stack is read
        else:
            floats.append(lr)
    if not by_device:
        return LrRow(floats)
    stacks = []
    for device, idx in by_device.items():
        dtype = _value_dtype(device)
        values = [groups[i]["lr"].detach().reshape(()).to(dtype) for i in idx]
        stacks.append((tuple(idx), torch.stack(values)))
    return LrRow(floats, tuple(stacks))


def values(row: LrRow) -> list[float]:
    """One row read back now (a sync when a tensor lr lives on an accelerator)."""
    return columns([row])[0] if row.stacks else list(row.floats)


def columns(rows: Sequence[LrRow]) -> list[list[float]]:
    """The rows' values, one list per step: one read per device for all tensor lrs.

    Rows whose tensor lrs moved to another device between steps (a restore, a
    swapped optimizer) are read one at a time."""
    out = list(map(list, map(_FLOATS, rows)))  # (C loops: a flush's every row)
    if not any(map(_STACKS, rows)):
        return out
    tensor_rows = [k for k, r in enumerate(rows) if r.stacks]
    layout = rows[tensor_rows[0]].stacks
    same = all(
        len(rows[k].stacks) == len(layout)
        and all(
            a[0] == b[0] and a[1].device == b[1].device
            for a, b in zip(rows[k].stacks, layout, strict=True)
        )
        for k in tensor_rows
    )
    groups = [tensor_rows] if same else [[k] for k in tensor_rows]
    for ks in groups:
        for pos, (idx, _) in enumerate(rows[ks[0]].stacks):
            table = torch.stack([rows[k].stacks[pos][1] for k in ks]).tolist()
            for k, vals in zip(ks, table, strict=True):
                for i, v in zip(idx, vals, strict=True):
                    out[k][i] = float(v)
    return out
