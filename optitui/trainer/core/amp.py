"""Mixed precision for ``setup()`` jobs: ``Job(precision="32" | "bf16" | "fp16")``.

bf16 and fp16 run the forward pass (the loss function included) under
``torch.autocast`` on the job's device; fp16 adds a ``torch.amp.GradScaler``,
as Lightning's ``precision="16-mixed"`` does: the loss is scaled before
``backward()``, the gradients are unscaled before clipping, and a step whose
gradients overflowed is skipped by the scaler (and recorded as skipped). The
scaler's state goes into checkpoints and range-test snapshots.

Whether the scaler skipped a step is read from its own per-optimizer record
as a device tensor, so recording it costs no sync; ``GradScaler.step`` itself
reads it back every step unless the optimizer is fused (``fused=True``), which
takes the scale and the overflow flag into its kernel.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.optim import Optimizer

PRECISIONS = ("32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def found_inf(scaler: Any, optimizer: Optimizer) -> torch.Tensor | None:
    """1.0 where the scaler found inf or NaN gradients for ``optimizer`` in this step
    (so it skipped, or will skip, the update), as a device tensor; None when the
    scaler has not checked this optimizer's gradients. Read before ``update()``."""
    states = getattr(scaler, "_per_optimizer_states", {})
    flags = list(states.get(id(optimizer), {}).get("found_inf_per_device", {}).values())
    if not flags:
        return None
    total: torch.Tensor = flags[0].clone()
    for f in flags[1:]:
        total += f.to(total.device, non_blocking=True)
    return total


class Amp:
    """Autocast and, for fp16, a GradScaler around the job's own step."""

    def __init__(self, precision: str, device: torch.device) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision: {precision!r}; use one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.device_type = device.type
        self.dtype = _DTYPES.get(precision)
        self.scaler: torch.amp.GradScaler | None = (
            torch.amp.GradScaler(device.type) if precision == "fp16" else None
        )

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()  # type: ignore[no-untyped-call]

    def unscale(self, optimizer: Optimizer) -> None:
        """Gradients back to their true size (before clipping reads their norm)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: Optimizer) -> torch.Tensor | float:
        """``optimizer.step()`` through the scaler; returns whether it was skipped (a
        device tensor under a scaler, read at the next flush; else 0.0)."""
        if self.scaler is None:
            optimizer.step()
            return 0.0
        self.scaler.step(optimizer)
        flag = found_inf(self.scaler, optimizer)
        self.scaler.update()
        return 0.0 if flag is None else flag

    def state_dict(self) -> dict[str, Any] | None:
        """The scaler's scale and growth tracker (reads the scale back: not per step)."""
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, saved: dict[str, Any] | None) -> None:
        if self.scaler is not None and saved:
            self.scaler.load_state_dict(saved)


def read_flags(flags: list[torch.Tensor | float]) -> list[float] | None:
    """A flush's skipped flags as floats (one read for all the device ones); None when no
    step could have been skipped (no scaler involved)."""
    if all(not isinstance(f, torch.Tensor) and not f for f in flags):
        return None
    tensors = [f for f in flags if isinstance(f, torch.Tensor)]
    read: list[float] = []
    if tensors:
        if len({t.device for t in tensors}) == 1:
            read = torch.stack([t.reshape(()).float() for t in tensors]).tolist()
        else:
            read = [float(t) for t in tensors]
    it = iter(read)
    return [1.0 if (next(it) if isinstance(f, torch.Tensor) else f) else 0.0 for f in flags]
