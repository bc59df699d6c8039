"""How a flush's values reach the host: at once, or (CUDA) one flush later without a wait.

On the CPU, and under torch.distributed (whose all-gather meets the other ranks anyway),
a flush reads its values with one ``tolist()``. On CUDA that read would block the
training thread until the device has run every queued kernel, so the flush instead
starts a non-blocking copy into pinned host memory, records an event after it, and
reads the copy at the next flush, when the event has long passed: no blocking
host-device sync on the hot path. The divergence guard then acts on a batch one
flush later. The copy and the event are injected, so the logic runs on CPU tensors
in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch


class Event(Protocol):
    """What a flush needs of a CUDA event."""

    def record(self) -> None: ...

    def query(self) -> bool: ...

    def synchronize(self) -> None: ...


@dataclass
class InFlight:
    """A flush's values on their way to the host, and what to record once they are read."""

    host: torch.Tensor
    event: Event
    batch: Any  # the flush's host-side part (step.Taken)
    check: bool

    def values(self) -> list[float]:
        """The values read back: no wait once the event has passed (the common case:
        a whole flush interval later); otherwise a wait for this copy alone."""
        if not self.event.query():
            self.event.synchronize()
        return self.host.tolist()  # pinned host memory: no device involved


class DeferredReads:
    """Starts each flush's copy to the host; its values are read at the next flush."""

    def __init__(
        self,
        pinned: Callable[[torch.Tensor], torch.Tensor],
        event: Callable[[], Event],
    ) -> None:
        self._pinned = pinned
        self._event = event

    def start(self, values: torch.Tensor, batch: Any, check: bool) -> InFlight:
        host = self._pinned(values)
        host.copy_(values, non_blocking=True)
        ev = self._event()
        ev.record()  # after the copy, on the stream that queued it
        return InFlight(host, ev, batch, check)


def _pinned(values: torch.Tensor) -> torch.Tensor:
    return torch.empty(values.shape, dtype=values.dtype, pin_memory=True)


def for_device(device: torch.device) -> DeferredReads | None:
    """Deferred reads on CUDA; None (read at once) elsewhere."""
    if device.type != "cuda":
        return None
    return DeferredReads(_pinned, torch.cuda.Event)
