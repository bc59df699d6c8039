"""The LR range test's math: sweep schedule, loss smoothing, stopping and lr suggestions.

Pure Python on ``math`` alone -- no torch, numpy or textual -- so the viewer can draw and
explain a curve, and the CLI print suggestions, without loading the training stack.
"""

from __future__ import annotations

from optitui.lrfind.schedule import (
    Smoother,
    StopRule,
    SweepConfig,
    factor,
    factors,
    multiplier,
    schedule,
    should_stop,
    smooth,
)
from optitui.lrfind.suggest import (
    RULES,
    Suggestion,
    gradient,
    minimum,
    slide,
    steep,
    suggest_all,
    trust_note,
    valley,
)

__all__ = [
    "RULES",
    "Smoother",
    "StopRule",
    "Suggestion",
    "SweepConfig",
    "factor",
    "factors",
    "gradient",
    "minimum",
    "multiplier",
    "schedule",
    "should_stop",
    "slide",
    "smooth",
    "steep",
    "suggest_all",
    "trust_note",
    "valley",
]
