"""An optimizer race's answer: each candidate's final smoothed loss, its change against
``current``, the noise band that change must clear, and the ranking.

Plain data in, plain data out: the job computes it once the race ends and stores it
with the race; ``optitui send`` and the dashboard only show it.

The band: each candidate's loss noise is read from its last steps as the spread of
step-to-step changes (a trend does not count as noise), pooled over the candidates
that finished. A smoothed loss (an EMA with weight ``smooth_f``) averages that noise
down by ``sqrt(smooth_f / (2 - smooth_f))``; the difference of two such values has
``sqrt(2)`` times that spread, and the band is two of those: a change inside it is
not told apart from the noise.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

#: the EMA weight of the newest loss in a candidate's smoothed curve
SMOOTH_F = 0.1
#: candidates as the job reports them while and after they run
WAITING, RUNNING, DONE, DIVERGED, CANCELLED = "waiting", "running", "done", "diverged", "cancelled"


def ended_word(state: str) -> str:
    """A candidate's state in the table of an ended race: one still waiting never ran
    (the race was cancelled or failed before it)."""
    return "not run" if state == WAITING else state


def tail(steps: int) -> int:
    """How many of the last steps the noise is read from."""
    return max(3, steps // 4)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _spread(losses: list[float]) -> list[float]:
    """Step-to-step changes of the finite losses, each over sqrt(2): one step's noise."""
    xs = [x for x in losses if _finite(x)]
    return [(b - a) / math.sqrt(2) for a, b in itertools.pairwise(xs)]


def noise_band(losses: list[list[float]], states: list[str], steps: int) -> float | None:
    """The band a change in final smoothed loss must clear (None: too few steps)."""
    changes: list[float] = []
    for curve, st in zip(losses, states, strict=True):
        if st == DONE:
            changes += _spread(curve[-tail(steps) :])
    if len(changes) < 2:
        return None
    sd = math.sqrt(sum(c * c for c in changes) / len(changes))
    return 2.0 * math.sqrt(2.0) * sd * math.sqrt(SMOOTH_F / (2.0 - SMOOTH_F))


def rank(
    texts: list[str],
    losses: list[list[float]],
    smoothed: list[list[float]],
    states: list[str],
    val: list[float | None],
    steps: int,
) -> list[dict[str, Any]]:
    """The table, best first: by validation loss where every finished candidate has one,
    else by final smoothed train loss; diverged and unfinished candidates last."""
    band = noise_band(losses, states, steps)
    finals: list[float | None] = [
        s[-1] if st == DONE and s and _finite(s[-1]) else None
        for s, st in zip(smoothed, states, strict=True)
    ]
    base = finals[0]
    rows: list[dict[str, Any]] = []
    for i, text in enumerate(texts):
        final = finals[i]
        change = None if final is None or base is None or i == 0 else final - base
        rows.append(
            {
                "candidate": i,
                "text": text,
                "state": states[i],
                "steps": len(losses[i]),
                "final": final,
                "change": change,
                "change_pct": None if change is None or not base else 100.0 * change / abs(base),
                "noise": band,
                "within_noise": None if change is None or band is None else abs(change) <= band,
                "val": val[i] if _finite(val[i]) else None,
            }
        )
    done = [r for r in rows if r["final"] is not None]
    by_val = bool(done) and all(r["val"] is not None for r in done)
    key = "val" if by_val else "final"
    ordered = sorted(done, key=lambda r: r[key]) + [r for r in rows if r["final"] is None]
    for n, r in enumerate(ordered, 1):
        r["rank"] = n
        r["ranked_by"] = key
    return ordered
