"""Lookahead (Zhang et al., 2019) around whatever optimizer runs, switchable live.

Every k optimizer steps the slow weights move a fraction alpha toward the fast
ones and the fast weights restart from there. The slow copy starts from the
current weights when switched on. Between syncs the cost is a counter.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer


class Lookahead:
    def __init__(
        self, optimizer: Optimizer, k: int, alpha: float, slow: list[torch.Tensor] | None = None
    ) -> None:
        """``slow``: weights to start from (a restore), else a copy of the current ones."""
        self.k = k
        self.alpha = alpha
        self.count = 0
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        if slow is None:
            with torch.no_grad():
                slow = [p.detach().clone() for p in self.params]
        self.slow = slow

    def after_step(self) -> None:
        self.count += 1
        if self.count % self.k:
            return
        with torch.no_grad():
            fast = [p.detach() for p in self.params]
            torch._foreach_lerp_(self.slow, fast, self.alpha)  # slow += alpha * (fast - slow)
            torch._foreach_copy_(fast, self.slow)

    def describe(self) -> dict[str, float | int]:
        return {"k": self.k, "alpha": self.alpha, "steps_to_sync": self.k - self.count % self.k}
