"""A y range that follows the data that matters, and when a log axis reads better.

A long run's first steps (loss 50 at step 1, 0.003 from step 500 on) would take a
min/max axis to themselves and squeeze everything after into the bottom row. As
TensorBoard's "ignore outliers in chart scaling" does, the range leaves out the
extremes: the 99th percentile of the smoothed loss in view, widened to the 95th
percentile of the raw band's column extremes and of the validation records (so the
noise the run really has stays on the plot); :func:`robust` says where the bottom is.
Points beyond it are drawn at the edge and marked (:func:`clip`). Percentiles are
taken over the decimated points, a few per plot column, so the cost does not grow
with the window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

#: share of the smoothed curve's samples left out at the top (its low end: see robust)
SMOOTH_TAIL = 0.01
#: share of the raw band's column extremes and of validation records left out at the top
BAND_TAIL = 0.05
#: the bottom of the range stays within this factor below the smoothed curve's low
LOW_FACTOR = 10.0
#: a log axis becomes the automatic choice when the values in view span more than this
#: (decades: 100x) ...
LOG_FROM = 2.0
#: ... and stays until they span less than this (30x), so the axis does not flip to and
#: fro as the run goes on
LOG_UNTIL = 1.5


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, interpolated between neighbours."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    at = q * (len(ordered) - 1)
    i = int(at)
    if i + 1 >= len(ordered):
        return ordered[-1]
    return ordered[i] + (ordered[i + 1] - ordered[i]) * (at - i)


def robust(
    smooth: Sequence[float], band: Sequence[float], others: Sequence[float] = ()
) -> tuple[float, float] | None:
    """(lo, hi) of the robust range over the smoothed samples, the raw band's points and
    other series' points (validation); None when there is nothing to show.

    Only the top is cut by percentiles: a loss's outliers are spikes, and its lowest
    values are usually the newest (a run converging), which must stay in view. The
    bottom is the lowest point, but no lower than :data:`LOW_FACTOR` below the smoothed
    curve's low (one batch at loss 1e-6 would otherwise stretch a log axis by decades).
    """
    highs: list[float] = []
    if smooth:
        highs.append(percentile(smooth, 1.0 - SMOOTH_TAIL))
    for values in (band, others):
        if values:
            highs.append(percentile(values, 1.0 - BAND_TAIL))
    if not highs:
        return None
    lo = min(min(v) for v in (smooth, band, others) if v)
    floor = percentile(smooth, SMOOTH_TAIL) if smooth else math.nan
    if floor > 0.0:
        lo = max(lo, floor / LOW_FACTOR)
    return lo, max(highs)


def auto_log(lo: float, hi: float, was_log: bool) -> bool:
    """Whether a log axis reads better for values lo..hi (every value in view, those
    clipped included: a loss that fell from 50 to 0.01 reads better on one, even
    where the axis leaves the 50 out): they span more than :data:`LOG_FROM` decades
    (:data:`LOG_UNTIL` once it was chosen), all positive."""
    if not lo > 0.0 or not math.isfinite(hi):
        return False
    return math.log10(hi / lo) > (LOG_UNTIL if was_log else LOG_FROM)


@dataclass
class Clipped:
    """A series' values held inside the axis, and the x of each point that was not."""

    ys: list[float]
    above: list[float] = field(default_factory=list)
    below: list[float] = field(default_factory=list)


def clip(
    xs: Sequence[float], ys: Sequence[float], lo: float, hi: float, slack: float = 0.0
) -> Clipped:
    """ys with every value beyond lo..hi put at the edge it passed; only those beyond it
    by more than ``slack`` (less than a row of the plot: not worth a mark) are listed."""
    out = Clipped(list(ys))
    if not out.ys or (min(out.ys) >= lo and max(out.ys) <= hi):  # the common case, in C
        return out
    for i, y in enumerate(out.ys):
        if y > hi:
            out.ys[i] = hi
            if y > hi + slack:
                out.above.append(xs[i])
        elif y < lo:
            out.ys[i] = lo
            if y < lo - slack:
                out.below.append(xs[i])
    return out


#: share of a metric chart's points left out at either end of its range ...
METRIC_TAIL = 0.02
#: ... and the room put back on each side (a fraction of what is left), so a steady trend
#: is never clipped, only what stands out from it
METRIC_PAD = 0.05


def metric(values: Sequence[float], keep: Sequence[float] = ()) -> tuple[float, float] | None:
    """(lo, hi) of a metric chart's axis: the points in view less the few outliers at
    either end (a metric may spike up or down: an accuracy that collapses for a step), and
    never less than ``keep`` (the newest values: what the user is watching for)."""
    if not values:
        return None
    lo, hi = percentile(values, METRIC_TAIL), percentile(values, 1.0 - METRIC_TAIL)
    pad = (hi - lo) * METRIC_PAD
    lo, hi = max(lo - pad, min(values)), min(hi + pad, max(values))
    if keep:
        lo, hi = min(lo, *keep), max(hi, *keep)
    return lo, hi
