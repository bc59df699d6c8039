"""The run's history as the viewer keeps it: append-only columns plus what plots need.

One thread (the store feed) extends a :class:`History`; the UI reads frozen
:class:`HistoryView` objects. Columns and pyramids only ever grow, and a view
records the lengths at the time it was taken, so the UI reads a consistent
prefix without locks or copies.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from functools import lru_cache
from operator import mul
from typing import Any, Protocol

from optitui.store.columns import MetricColumns
from optitui.tui.bulk import numpy
from optitui.tui.metric_history import MetricHistory, MetricsView
from optitui.tui.pyramid import Pyramid, PyramidView


class Rows(Protocol):
    """Where history rows come from: a run store's reader, or a remote run's mirror."""

    def read_metrics(self, into: MetricColumns | None = None) -> MetricColumns: ...

    def val(self, after_id: int = 0) -> list[tuple[int, int, int, float | None]]: ...


#: below this weight the bias correction of the EMA is not negligible (float64)
_CORRECTED_UNTIL = 1.0 - 1e-12
#: the EMA's state is kept after every BLOCK values; values between are recomputed
BLOCK = 64


@dataclass(frozen=True)
class SmoothView:
    """The smoothed loss at any index of a frozen prefix (from the nearest block state)."""

    src: array[float]
    length: int
    beta: float
    block_m: array[float]
    block_w: array[float]
    blocks: int

    def at(self, i: int) -> float:
        """The bias-corrected EMA after value ``i``: at most BLOCK - 1 steps of work once
        the block states reach ``i``; before, from the last values only (see _window)."""
        j = min((i + 1) // BLOCK, self.blocks - 1)
        if i + 1 - j * BLOCK > BLOCK:
            near = _window_at(self.src, i, self.beta)
            if near is not None:
                return near
        m, w = self.block_m[j], self.block_w[j]
        b, a = self.beta, 1.0 - self.beta
        for x in self.src[j * BLOCK : i + 1]:
            if x - x == 0.0:
                m = b * m + a * x
                w = b * w + a
        return m / w if w > 0.0 else math.nan


#: a value this many finite values back weighs under 2**-64 of the newest in the EMA
_WINDOW_BITS = 64
#: windows this long are summed by numpy where it is installed (beta 0.98: 2,196 values)
BULK_WINDOW = 256
#: a quick read smooths from windows only when the rows are this many windows at least
QUICK_ROWS_PER_WINDOW = 128


@lru_cache(maxsize=8)
def _window(beta: float) -> list[float]:
    """Each weight of the last values in the EMA, oldest first: enough values that what
    came before weighs under 2**-64 together (beta**len <= 2**-64)."""
    if beta <= 0.0:
        return [1.0]
    k = math.ceil(_WINDOW_BITS * math.log(2.0) / -math.log(beta))
    a = 1.0 - beta
    return [a * beta ** (k - 1 - t) for t in range(k)]


def _window_at(src: array[float], i: int, beta: float) -> float | None:
    """The EMA after value ``i`` from the window of values before it that holds all but
    2**-64 of its weight (a few thousand at beta 0.98), or None where that is no shortcut:
    the window reaches the first value (the bias correction still matters there) or holds
    a value that is not finite (skipped by the average, which shifts the weights).

    What it leaves out is under 2**-64 times the largest loss before the window: the same
    value as the block states give to the last bits, for the first frame of a long run,
    before they are computed (see History.refine)."""
    weights = _window(beta)
    start = i + 1 - len(weights)
    if start <= 0:
        return None
    part = src[start : i + 1]
    np = numpy() if len(weights) >= BULK_WINDOW else None
    if np is not None:  # the same sum to the last bits or so, in a few microseconds
        values = np.frombuffer(part, dtype=np.float64)
        if not math.isfinite(values.sum()):
            return None
        total = float(values @ _window_array(beta))
    else:
        if not math.isfinite(sum(part)):
            return None
        total = sum(map(mul, part, weights))
    return total / (1.0 - beta ** len(weights))


@lru_cache(maxsize=8)
def _window_array(beta: float) -> Any:
    """:func:`_window` as a numpy array (only called where numpy is there)."""
    np = numpy()
    assert np is not None
    return np.array(_window(beta), dtype=np.float64)


class Ema:
    """Bias-corrected exponential moving average (the "smoothed" loss) of a growing column.

    Non-finite values are skipped: the average holds its value through them.
    Only the state after every BLOCK values is stored; a block of finite values
    in the steady state is one dot product, so a million steps take a few
    tens of milliseconds, and any single value is recomputed on demand.
    """

    def __init__(self, beta: float) -> None:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"ema beta must be in [0, 1), got {beta}")
        self.beta = beta
        self.block_m: array[float] = array("d", [0.0])
        self.block_w: array[float] = array("d", [0.0])  # 1 - beta**k after k finite values
        a = 1.0 - beta
        self._weights = [a * beta ** (BLOCK - 1 - i) for i in range(BLOCK)]
        self._decay = beta**BLOCK

    def extend(self, src: array[float], length: int) -> None:
        """Take every complete block of src[:length] not taken yet."""
        b, a = self.beta, 1.0 - self.beta
        m, w = self.block_m[-1], self.block_w[-1]
        start = (len(self.block_m) - 1) * BLOCK
        weights, decay = self._weights, self._decay
        end = start + (length - start) // BLOCK * BLOCK
        all_finite = end > start and math.isfinite(sum(src[start:end]))
        while start + BLOCK <= length:
            block = src[start : start + BLOCK]
            if w >= _CORRECTED_UNTIL and (all_finite or math.isfinite(sum(block))):
                m = decay * m + sum(map(mul, block, weights))
                w = decay * w + (1.0 - decay)
            else:  # still correcting the bias, or a block with NaN/inf: value by value
                for x in block:
                    if x - x == 0.0:
                        m = b * m + a * x
                        w = b * w + a
            self.block_m.append(m)
            self.block_w.append(w)
            start += BLOCK

    def view(self, src: array[float], length: int) -> SmoothView:
        return SmoothView(src, length, self.beta, self.block_m, self.block_w, len(self.block_m))


EMPTY_TIME: array[float] = array("d")


@dataclass(frozen=True)
class HistoryView:
    """What the plots draw from: a frozen prefix of every series."""

    length: int
    step: array[float]
    loss: PyramidView
    smooth: SmoothView
    lrs: tuple[tuple[int, PyramidView], ...]  # (group index, its lr column)
    val_step: array[float]
    val_loss: PyramidView
    breaks: tuple[int, ...] = ()  # rows where the step went back (a checkpoint restore)
    val_breaks: tuple[int, ...] = ()  # the same for validation records
    time: array[float] = field(default_factory=lambda: EMPTY_TIME)  # each row's wall time
    #: (group index, its update_ratio column: NaN on the steps not measured)
    ratios: tuple[tuple[int, array[float]], ...] = ()
    metrics: MetricsView = field(default_factory=MetricsView)  # the metrics screen's series

    @property
    def val_length(self) -> int:
        return self.val_loss.length


def find_breaks(steps: array[float], lo: int, hi: int) -> list[int]:
    """Rows i in [lo, hi) with steps[i] <= steps[i - 1]: where a rewind started a branch.

    Within a branch the step grows by one per row, so a range whose ends differ
    by its length holds no break and is skipped whole; only ranges that do not
    are split, so a million rows with a few rewinds cost a few hundred checks.
    """
    out: list[int] = []
    stack = [(max(lo, 1), hi)]
    while stack:
        a, b = stack.pop()
        if b - a <= 0:
            continue
        if steps[b - 1] - steps[a - 1] == b - a:  # all steps +1: no break here
            continue
        if b - a <= 8:
            out += [i for i in range(a, b) if steps[i] <= steps[i - 1]]
            continue
        mid = (a + b) // 2
        stack += [(mid, b), (a, mid)]
    return sorted(out)


EMPTY_COLUMN: array[float] = array("d")


def quick_enough(rows: int, ema_beta: float) -> bool:
    """Whether a first frame of ``rows`` rows smooths its points from their windows: a
    smoothed value from its window costs len(window) steps per plot column, less than
    smoothing every row only when the rows are many more (a long EMA: not so)."""
    return len(_window(ema_beta)) * QUICK_ROWS_PER_WINDOW <= rows


def empty_view() -> HistoryView:
    empty = PyramidView(EMPTY_COLUMN, 0, ())
    smooth = Ema(0.0).view(EMPTY_COLUMN, 0)
    return HistoryView(0, EMPTY_COLUMN, empty, smooth, (), EMPTY_COLUMN, empty)


@dataclass
class History:
    """Metric columns read from a run store, with the smoothed loss and pyramids.

    Without ``pyramids`` (a run only drawn as lines, never as min/max bands) the
    columns are read and smoothed, and reading a long run costs about half as much.
    """

    ema_beta: float = 0.98
    pyramids: bool = True
    metrics: MetricColumns = field(default_factory=MetricColumns)
    val_step: array[float] = field(default_factory=lambda: array("d"))
    val_loss: array[float] = field(default_factory=lambda: array("d"))
    val_last_id: int = 0
    breaks: list[int] = field(default_factory=list)
    val_breaks: list[int] = field(default_factory=list)
    _ema: Ema | None = None
    _pyramids: dict[str, Pyramid] = field(default_factory=dict)
    #: rows taken by a quick read are not smoothed yet (their block states)
    refined: bool = True
    extra: MetricHistory = field(default_factory=MetricHistory)

    def __post_init__(self) -> None:
        self.extra.pyramids = self.pyramids

    def read(self, reader: Rows, quick: bool = False) -> bool:
        """Take every new metric and validation row from ``reader``; True if any came.

        ``quick`` leaves the block states of the smoothed loss for :meth:`refine`: a view
        then draws the same smoothed loss from the last few thousand values before each
        point it draws, which for a first frame costs less than smoothing every row (the
        pyramids are built at once: without them every frame scans every row)."""
        before = (self.metrics.length, len(self.val_step))
        reader.read_metrics(into=self.metrics)
        for row_id, step, _epoch, loss in reader.val(self.val_last_id):
            if self.val_step and step <= self.val_step[-1]:
                self.val_breaks.append(len(self.val_step))
            self.val_step.append(float(step))
            self.val_loss.append(math.nan if loss is None else float(loss))
            self.val_last_id = row_id
        logged = self.extra.read(reader)
        if (self.metrics.length, len(self.val_step)) == before:
            return self.extra.derive(self.metrics) or logged
        self._derive(before[0], quick)
        self.extra.derive(self.metrics)
        return True

    def refine(self) -> bool:
        """Smooth what quick reads left unsmoothed; True when there was some."""
        if self.refined:
            return False
        self.refined = True
        self._smooth_and_pyramids()
        return True

    def _derive(self, old_length: int, quick: bool = False) -> None:
        cols = self.metrics.columns
        n = self.metrics.length
        steps = cols.get("step")
        if steps is not None and n > old_length:
            self.breaks += find_breaks(steps, old_length, n)
        self.refined = not (quick and quick_enough(n, self.ema_beta))
        self._smooth_and_pyramids(smooth=self.refined)

    def _smooth_and_pyramids(self, smooth: bool = True) -> None:
        cols = self.metrics.columns
        n = self.metrics.length
        loss = cols.get("loss")
        if loss is not None and smooth:
            if self._ema is None:
                self._ema = Ema(self.ema_beta)
            self._ema.extend(loss, n)
        for name in self._series_names() if self.pyramids else ():
            self._pyramids.setdefault(name, Pyramid()).update(cols[name], n)

    def _series_names(self) -> list[str]:
        return [k for k in self.metrics.columns if k == "loss" or k.startswith("lr/")]

    def _pview(self, name: str, col: array[float], n: int) -> PyramidView:
        pyr = self._pyramids.get(name)
        return pyr.view(col, n) if pyr is not None else PyramidView(col, n, ())

    def view(self) -> HistoryView:
        """A frozen view of everything read so far (cheap: no copies)."""
        cols = self.metrics.columns
        n = self.metrics.length
        if n == 0 and not self.val_step and not self.extra.logged.length:
            return empty_view()
        loss = cols.get("loss", EMPTY_COLUMN)
        lrs = []
        for name in self._series_names():
            if name.startswith("lr/") and name[3:].isdigit():
                lrs.append((int(name[3:]), self._pview(name, cols[name], n)))
        lrs.sort(key=lambda item: item[0])
        return HistoryView(
            length=n,
            step=cols.get("step", EMPTY_COLUMN),
            loss=self._pview("loss", loss, n if loss is not EMPTY_COLUMN else 0),
            smooth=(self._ema or Ema(self.ema_beta)).view(
                loss, n if loss is not EMPTY_COLUMN else 0
            ),
            lrs=tuple(lrs),
            val_step=self.val_step,
            val_loss=self._pview("val", self.val_loss, len(self.val_loss)),
            breaks=tuple(self.breaks),
            val_breaks=tuple(self.val_breaks),
            time=cols.get("time", EMPTY_TIME),
            ratios=ratio_columns(cols),
            metrics=self.extra.view(self.metrics, tuple(self.breaks)),
        )


def ratio_columns(cols: dict[str, array[float]]) -> tuple[tuple[int, array[float]], ...]:
    """Each group's ``update_ratio/<i>`` column, by group index."""
    out = [
        (int(name[13:]), col)
        for name, col in cols.items()
        if name.startswith("update_ratio/") and name[13:].isdigit()
    ]
    return tuple(sorted(out, key=lambda item: item[0]))
