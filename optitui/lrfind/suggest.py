"""Learning-rate suggestions from a range-test curve, each with a note saying how far to trust it.

Four rules, shown together so the user can see when they agree:

- ``steep``: the steepest descent of the loss (torch-lr-finder's rule; by default against
  log lr, which is the axis the curve is plotted and read on);
- ``valley``: a point two thirds down the longest decreasing stretch (fastai's default);
- ``minimum``: the lr at the lowest loss, divided by 10;
- ``slide``: fastai's interval slide rule on the gradient.

Every rule takes the curve as recorded (``lrs`` and the *smoothed* ``losses``), drops
``skip_start`` points at the start and ``skip_end`` at the end, then cuts the rest at the
first non-finite lr or loss or non-positive lr (the order fastai uses). A rule never raises
on a curve: when it cannot answer, ``lr`` and ``index`` are None and ``note`` says why.
``index`` always points into the caller's lists, so ``losses[index]`` is the point to mark.

Trust heuristic (deliberately simple, see :func:`trust_note`): a curve is not trusted when
it has fewer than :data:`MIN_POINTS` usable points, when it never falls, or when the typical
point-to-point change of the raw losses is more than :data:`NOISE_RATIO` of the total drop
of the smoothed curve -- then the shape that the rules read is mostly noise. A suggestion
past the point where the loss starts to blow up (:func:`blowup_index`) is not trusted
either.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Literal

from optitui.lrfind.schedule import SweepConfig, noise_level

__all__ = [
    "MIN_POINTS",
    "NOISE_RATIO",
    "RULES",
    "Suggestion",
    "blowup_index",
    "gradient",
    "minimum",
    "slide",
    "steep",
    "suggest_all",
    "trust_note",
    "valley",
]

RULES = ("steep", "valley", "minimum", "slide")
MIN_POINTS = 10
"""Fewer usable points than this and no suggestion is trusted."""
NOISE_RATIO = 0.15
"""Median |raw[i+1] - raw[i]| above this fraction of the smoothed drop: too noisy."""

Against = Literal["log_lr", "index"]


@dataclass(frozen=True)
class Suggestion:
    """One rule's answer: the lr (None when it has none), its point, and why not to trust it."""

    rule: str
    lr: float | None
    index: int | None
    note: str = ""

    @property
    def trusted(self) -> bool:
        """An lr and no reservation."""
        return self.lr is not None and not self.note


def _div(a: float, b: float) -> float:
    """IEEE division (what numpy gives, with its warning) instead of ZeroDivisionError."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def gradient(values: Sequence[float], coords: Sequence[float] | None = None) -> list[float]:
    """``numpy.gradient(values)`` or ``numpy.gradient(values, coords)``, bit for bit.

    Second-order central differences inside, first-order differences at both ends; with
    ``coords``, the non-uniform-spacing formulas, reduced to the uniform ones when every
    spacing is equal (as numpy does). Needs at least 2 values (ValueError otherwise).
    """
    f = [float(v) for v in values]
    n = len(f)
    if n < 2:
        raise ValueError(f"gradient needs at least 2 values, got {n}")
    if coords is None:
        spacing: float | list[float] = 1.0
    else:
        x = [float(c) for c in coords]
        if len(x) != n:
            raise ValueError(f"coords has {len(x)} values for {n} values")
        d = [x[i + 1] - x[i] for i in range(n - 1)]
        spacing = d[0] if all(v == d[0] for v in d) else d
    out = [0.0] * n
    if isinstance(spacing, float):
        for i in range(1, n - 1):
            out[i] = _div(f[i + 1] - f[i - 1], 2.0 * spacing)
        out[0] = _div(f[1] - f[0], spacing)
        out[-1] = _div(f[-1] - f[-2], spacing)
        return out
    for i in range(1, n - 1):
        dx1, dx2 = spacing[i - 1], spacing[i]
        a = _div(-dx2, dx1 * (dx1 + dx2))
        b = _div(dx2 - dx1, dx1 * dx2)
        c = _div(dx1, dx2 * (dx1 + dx2))
        out[i] = a * f[i - 1] + b * f[i] + c * f[i + 1]
    out[0] = _div(f[1] - f[0], spacing[0])
    out[-1] = _div(f[-1] - f[-2], spacing[-1])
    return out


@dataclass(frozen=True)
class _Curve:
    """The usable part of a curve: ``lrs[offset:offset+len]`` of the caller's lists."""

    offset: int
    lrs: list[float]
    losses: list[float]
    raw: list[float] | None


def _usable(
    lrs: Sequence[float],
    losses: Sequence[float],
    skip_start: int,
    skip_end: int,
    raw: Sequence[float] | None,
) -> _Curve:
    n = min(len(lrs), len(losses))
    if raw is not None:
        n = min(n, len(raw))
    start = max(0, skip_start)
    stop = max(start, n - max(0, skip_end))
    for i in range(start, stop):
        values = (lrs[i], losses[i]) if raw is None else (lrs[i], losses[i], raw[i])
        if not all(math.isfinite(v) for v in values) or lrs[i] <= 0:
            stop = i
            break
    return _Curve(
        offset=start,
        lrs=[float(v) for v in lrs[start:stop]],
        losses=[float(v) for v in losses[start:stop]],
        raw=None if raw is None else [float(v) for v in raw[start:stop]],
    )


def _short(n: int) -> str:
    return f"curve too short ({n} point{'' if n == 1 else 's'} after skipping)"


def _argmin(values: Sequence[float]) -> int | None:
    """First index of the smallest value, NaN ignored; None when there is none."""
    best: int | None = None
    for i, v in enumerate(values):
        if not math.isnan(v) and (best is None or v < values[best]):
            best = i
    return best


def trust_note(losses: Sequence[float], raw: Sequence[float] | None = None) -> str:
    """Why a usable (skipped, finite) curve is not to be trusted, or "" when it is.

    Too short: fewer than :data:`MIN_POINTS` points. Flat: the smoothed loss never falls
    below an earlier value. Too noisy: the median absolute step of the raw losses (of the
    smoothed ones when no raw losses are given) exceeds :data:`NOISE_RATIO` times the drop,
    the fall from the highest point before the minimum to the minimum. A median step is a
    robust estimate of the noise (about one standard deviation for white noise), and on a
    clean curve it is a small fraction of the drop however the drop is distributed.
    """
    n = len(losses)
    if n < MIN_POINTS:
        return _short(n)
    lo = _argmin(losses)
    if lo is None:
        return "no finite loss"
    drop = max(losses[: lo + 1]) - losses[lo]
    if not drop > 0:
        return "no decrease: the loss never falls in the usable range"
    series = raw if raw is not None and len(raw) == n else losses
    noise = statistics.median(abs(series[i + 1] - series[i]) for i in range(n - 1))
    if noise > NOISE_RATIO * drop:
        return (
            f"too noisy: the median point-to-point change {noise:.3g} is "
            f"{noise / drop:.0%} of the drop {drop:.3g}"
        )
    return ""


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def steep(
    lrs: Sequence[float],
    losses: Sequence[float],
    *,
    skip_start: int = 10,
    skip_end: int = 5,
    against: Against = "log_lr",
    raw_losses: Sequence[float] | None = None,
) -> Suggestion:
    """The lr where the loss falls fastest: argmin of the gradient of the losses.

    ``against="index"`` is torch-lr-finder's ``plot(suggest_lr=True)``:
    ``argmin(np.gradient(losses))`` with unit spacing. ``against="log_lr"`` (default) is
    ``np.gradient(losses, log(lrs))``, the slope on the log-lr axis the curve is read on,
    which also holds for linear sweeps. Unlike torch-lr-finder, a curve with no falling
    point gets no lr (rather than the first point of a flat or rising curve).
    """
    if against not in ("log_lr", "index"):
        raise ValueError(f"against={against!r}: must be 'log_lr' or 'index'")
    c = _usable(lrs, losses, skip_start, skip_end, raw_losses)
    n = len(c.losses)
    if n < 2:
        return Suggestion("steep", None, None, _short(n))
    if against == "index":
        grad = gradient(c.losses)
    else:
        xs = [math.log(v) for v in c.lrs]
        if any(b <= a for a, b in pairwise(xs)):
            return Suggestion("steep", None, None, "lrs not increasing: no slope against log lr")
        grad = gradient(c.losses, xs)
    i = _argmin(grad)
    if i is None or not grad[i] < 0:
        return Suggestion("steep", None, None, "no decreasing run")
    edge = "steepest point at the edge of the usable range" if i in (0, n - 1) else ""
    return Suggestion("steep", c.lrs[i], c.offset + i, _join(trust_note(c.losses, c.raw), edge))


def _valley_index(losses: Sequence[float]) -> tuple[int, int, int]:
    """fastai's longest-valley search: (max_start, max_end, length).

    ``lds[i]`` is the length of the longest strictly decreasing subsequence ending at
    ``i`` (not necessarily contiguous, as in fastai); ``max_end`` is the first index with
    the largest ``lds`` and ``max_start = max_end - lds[max_end]`` (fastai's formula: one
    before the first point when the stretch is contiguous). fastai
    fills ``lds`` with an O(n^2) double loop; this computes the same ``lds`` in
    O(n log n) (patience sorting on the negated losses), so long sweeps stay instant.
    """
    tails: list[float] = []  # tails[k]: smallest end of an increasing run of -loss, length k+1
    max_end, best = 0, 0
    for i, loss in enumerate(losses):
        x = -loss
        k = bisect_left(tails, x)
        if k == len(tails):
            tails.append(x)
        else:
            tails[k] = x
        if k + 1 > best:
            max_end, best = i, k + 1
    return max_end - best, max_end, best


def valley(
    lrs: Sequence[float],
    losses: Sequence[float],
    *,
    skip_start: int = 10,
    skip_end: int = 5,
    raw_losses: Sequence[float] | None = None,
) -> Suggestion:
    """fastai's valley rule: a point part-way down the longest decreasing stretch.

    With ``sections = (max_end - max_start) / 3`` the point is ``max_start +
    int(sections) + int(sections / 2)``, clamped at the first usable point (fastai's
    off-by-one ``max_start`` can make it -1 on a two-point valley, which fastai wraps to
    the last point). No lr when the loss never decreases.
    """
    c = _usable(lrs, losses, skip_start, skip_end, raw_losses)
    n = len(c.losses)
    if n < 2:
        return Suggestion("valley", None, None, _short(n))
    max_start, max_end, length = _valley_index(c.losses)
    if length < 2:
        return Suggestion("valley", None, None, "no decreasing run")
    sections = (max_end - max_start) / 3
    i = max(0, max_start + int(sections) + int(sections / 2))
    return Suggestion("valley", c.lrs[i], c.offset + i, trust_note(c.losses, c.raw))


def minimum(
    lrs: Sequence[float],
    losses: Sequence[float],
    *,
    skip_start: int = 10,
    skip_end: int = 5,
    raw_losses: Sequence[float] | None = None,
) -> Suggestion:
    """A tenth of the lr at the lowest loss (fastai's ``minimum``); ``index`` is that point."""
    c = _usable(lrs, losses, skip_start, skip_end, raw_losses)
    n = len(c.losses)
    i = _argmin(c.losses)
    if i is None:
        return Suggestion("minimum", None, None, _short(n))
    if c.lrs[i] / 10 == 0:
        return Suggestion("minimum", None, None, f"lr {c.lrs[i]!r} / 10 underflows to 0")
    end = (
        "minimum at the end of the usable range: the loss may not have turned up yet"
        if n > 1 and i == n - 1
        else ""
    )
    return Suggestion(
        "minimum", c.lrs[i] / 10, c.offset + i, _join(trust_note(c.losses, c.raw), end)
    )


def slide(
    lrs: Sequence[float],
    losses: Sequence[float],
    *,
    skip_start: int = 10,
    skip_end: int = 5,
    lr_diff: int = 15,
    thresh: float = 0.005,
    raw_losses: Sequence[float] | None = None,
) -> Suggestion:
    """fastai's interval slide rule.

    With ``grad = np.gradient(losses)`` (unit spacing) and, on the usable curve of n
    points, ``r = n - 1`` and ``l = r - lr_diff`` (fastai's ``-1`` and ``-1 - lr_diff``):
    while ``l >= 0`` and ``|grad[r] - grad[l]| > thresh``, remember ``l`` and move both one
    point left. The answer is the last remembered ``l`` (the starting ``l`` if the test
    fails at once, point 0 if it never fails). On a curve shorter than ``lr_diff + 1``
    points fastai raises; here ``lr_diff`` shrinks to ``n - 1`` and the note says so.
    ``thresh`` is in loss units per point, so the rule depends on the loss's scale.
    """
    if lr_diff < 1 or not thresh >= 0:
        raise ValueError(f"lr_diff={lr_diff!r}, thresh={thresh!r}: need lr_diff >= 1, thresh >= 0")
    c = _usable(lrs, losses, skip_start, skip_end, raw_losses)
    n = len(c.losses)
    if n < 2:
        return Suggestion("slide", None, None, _short(n))
    grad = gradient(c.losses)
    diff = min(lr_diff, n - 1)
    r = n - 1
    left = r - diff
    pick = left
    while left >= 0 and abs(grad[r] - grad[left]) > thresh:
        pick = left
        r -= 1
        left -= 1
    if diff < lr_diff:
        note = f"curve too short for slide ({n} points after skipping, it needs {lr_diff + 1})"
    else:
        note = trust_note(c.losses, c.raw)
    return Suggestion("slide", c.lrs[pick], c.offset + pick, note)


def blowup_index(
    losses: Sequence[float], raw_losses: Sequence[float] | None = None, start: int = 10
) -> int | None:
    """Where the loss starts to blow up: the first point after the lowest smoothed loss
    that is above twice it and above it by more than three noise widths (the noise of
    the first ``start`` raw losses, at the sweep's smallest lrs). None when it never does.
    Non-finite points count as blown up."""
    lo = _argmin([v if math.isfinite(v) else math.nan for v in losses])
    if lo is None:
        return None
    head = list((raw_losses if raw_losses is not None else losses)[: max(start, 5)])
    noise = noise_level(head)[1]
    low = losses[lo]
    limit = low + max(abs(low), 3 * noise)
    for i in range(lo + 1, len(losses)):
        if not math.isfinite(losses[i]) or losses[i] > limit:
            return i
    return None


def suggest_all(
    lrs: Sequence[float],
    losses: Sequence[float],
    config: SweepConfig | None = None,
    *,
    raw_losses: Sequence[float] | None = None,
    against: Against = "log_lr",
) -> list[Suggestion]:
    """Every rule on one curve, in the fixed order of :data:`RULES`.

    ``losses`` are the smoothed losses the rules read; ``raw_losses`` (optional) feed the
    noise estimate of the notes. Skips come from ``config`` (the defaults when None).
    """
    cfg = config if config is not None else SweepConfig()
    start, end = cfg.skip_start, cfg.skip_end
    found = [
        steep(lrs, losses, skip_start=start, skip_end=end, against=against, raw_losses=raw_losses),
        valley(lrs, losses, skip_start=start, skip_end=end, raw_losses=raw_losses),
        minimum(lrs, losses, skip_start=start, skip_end=end, raw_losses=raw_losses),
        slide(lrs, losses, skip_start=start, skip_end=end, raw_losses=raw_losses),
    ]
    b = blowup_index(losses, raw_losses, start)
    if b is None:
        return found
    past = f"past the point where the loss starts to blow up (lr {lrs[b]:.3g})"
    return [
        replace(s, note=_join(s.note, past)) if s.index is not None and s.index >= b else s
        for s in found
    ]
