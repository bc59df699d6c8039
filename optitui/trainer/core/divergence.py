"""The divergence policy a Job starts with and the ``divergence`` command changes:
what to do when the loss or a gradient norm stops being finite, or the loss spikes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ACTIONS = ("pause", "rollback", "ignore")


@dataclass
class GuardPolicy:
    action: str = "pause"
    lr_factor: float = 0.5
    skip: int = 10
    spike_factor: float = 3.0
    snapshot_every: int = 200

    def validate(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"on_divergence: {self.action!r}; use one of {', '.join(ACTIONS)}")
        if not (0 < self.lr_factor <= 1):
            raise ValueError(f"rollback lr_factor must be in (0, 1], got {self.lr_factor!r}")
        if self.skip < 0 or self.snapshot_every < 1:
            raise ValueError("skip must be >= 0 and snapshot_every >= 1")
        if not self.spike_factor > 1:
            raise ValueError(f"spike_factor must be > 1, got {self.spike_factor!r}")

    def describe(self) -> dict[str, Any]:
        return asdict(self)
