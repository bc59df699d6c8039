"""How big a snapshot of the training state is, known before one is taken.

The divergence guard's rollback snapshot and the range test's snapshot copy
the parameters, buffers and optimizer state to host memory. For a small model
that is a fraction of a second; for 7B parameters with AdamW it is about 84 GB
per rank. The size is computed from shapes and dtypes only (``numel *
element_size``, so a model on the ``meta`` device works too): the optimizer
state that exists is counted as it is, and for parameters without state yet
(optimizers create it at their first step) a step of the same optimizer class,
with the same settings, on two-element stand-ins on the CPU shows how many
bytes of state each element of each dtype gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

#: above this a snapshot is not taken in host memory: rollback uses checkpoints, the
#: range test writes its snapshot to a file (``Job(snapshot_limit_gb=...)``)
DEFAULT_LIMIT_GB = 4.0
#: host copies of pageable memory run at a few GB/s: what a snapshot's time is said as
COPY_GB_PER_S = 5.0


@dataclass(frozen=True)
class Footprint:
    params: int  # parameters counted (not bytes)
    model_bytes: int  # parameters and buffers
    optimizer_bytes: int
    optimizer: str

    @property
    def total(self) -> int:
        return self.model_bytes + self.optimizer_bytes

    def describe(self) -> str:
        seconds = self.total / 1e9 / COPY_GB_PER_S
        return (
            f"{_count(self.params)} parameters: {_bytes(self.model_bytes)} of parameters and "
            f"buffers + {_bytes(self.optimizer_bytes)} of {self.optimizer} state = "
            f"{_bytes(self.total)} (about {seconds:.1f} s to copy to host memory)"
            if seconds >= 0.05
            else f"{_count(self.params)} parameters, {_bytes(self.total)} with the "
            f"{self.optimizer} state"
        )


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} bytes"


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def measure(model: nn.Module, optimizer: Optimizer) -> Footprint:
    """Bytes a snapshot of ``model`` and ``optimizer`` holds (data is never read)."""
    seen: set[int] = set()
    n_params = model_bytes = 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) in seen:
            continue
        seen.add(id(t))
        model_bytes += _nbytes(t)
        if isinstance(t, nn.Parameter):
            n_params += t.numel()
    opt_bytes = 0
    per_element: dict[tuple[int, torch.dtype], tuple[float, int]] = {}
    for gi, group in enumerate(optimizer.param_groups):
        for p in group["params"]:
            if id(p) not in seen:  # optimizer-only tensors (no model given)
                seen.add(id(p))
                model_bytes += _nbytes(p)
                n_params += p.numel()
            state = optimizer.state.get(p)
            if state:
                opt_bytes += _state_bytes(state)
                continue
            key = (gi, p.dtype)
            if key not in per_element:
                per_element[key] = _per_element(optimizer, group, p.dtype)
            scale, fixed = per_element[key]
            opt_bytes += int(p.numel() * scale) + fixed
    return Footprint(n_params, model_bytes, opt_bytes, type(optimizer).__name__)


def _state_bytes(state: Any) -> int:
    if isinstance(state, torch.Tensor):
        return _nbytes(state)
    if isinstance(state, dict):
        return sum(_state_bytes(v) for v in state.values())
    if isinstance(state, list | tuple):
        return sum(_state_bytes(v) for v in state)
    return 0


def _per_element(
    optimizer: Optimizer, group: dict[str, Any], dtype: torch.dtype
) -> tuple[float, int]:
    """(state bytes per parameter element, fixed bytes per parameter) for ``group``'s
    settings and ``dtype``, from one step on a stand-in; 2x the parameter's own
    element size (Adam's two moments) when the class cannot be stepped that way."""
    size = 2
    probe = torch.zeros(size, dtype=dtype, requires_grad=True)
    settings = {
        k: (v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v)
        for k, v in group.items()
        if k not in ("params", "capturable", "foreach", "fused")
    }
    try:
        cls: Any = type(optimizer)
        stand_in = cls([{"params": [probe], **settings}])
        probe.grad = torch.ones_like(probe)
        stand_in.step()
        state = stand_in.state.get(probe, {})
    except Exception:
        return 2.0 * probe.element_size(), 0
    scaled = fixed = 0
    for v in _tensors(state):
        if v.numel() == size:
            scaled += v.element_size()
        else:
            fixed += _nbytes(v)
    return float(scaled), fixed


def _tensors(state: Any) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in _tensors(v)]
    if isinstance(state, list | tuple):
        return [t for v in state for t in _tensors(v)]
    return []
