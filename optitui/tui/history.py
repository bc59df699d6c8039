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
from itertools import accumulate, islice

from optitui.store.reader import MetricColumns, RunReader
from optitui.tui.pyramid import Pyramid, PyramidView

#: below this weight the bias correction of the EMA is negligible (float64)
_CORRECTED_UNTIL = 1.0 - 1e-12


class Ema:
    """Bias-corrected exponential moving average (the "smoothed" loss), extended in place.

    Non-finite values are skipped: the average holds its value through them.
    """

    def __init__(self, beta: float) -> None:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"ema beta must be in [0, 1), got {beta}")
        self.beta = beta
        self._m = 0.0
        self._w = 0.0  # 1 - beta**k for k finite values seen

    def extend(self, src: array[float], start: int, out: array[float]) -> None:
        """Append the average after each of src[start:] to ``out``."""
        b, a = self.beta, 1.0 - self.beta
        m, w = self._m, self._w
        i, n = start, len(src)
        while i < n and w < _CORRECTED_UNTIL:  # the first ~1/(1-beta)*28 steps only
            x = src[i]
            if x - x == 0.0:
                m = b * m + a * x
                w = b * w + a
            out.append(m / w if w > 0.0 else math.nan)
            i += 1
        if i < n:  # steady state: one C-level pass, no correction left to apply
            vals = array(
                "d",
                accumulate(
                    islice(src, i, n),
                    lambda acc, x: b * acc + a * x if x - x == 0.0 else acc,
                    initial=m,
                ),
            )
            m = vals[-1]
            out.extend(vals[1:])
        self._m, self._w = m, w


@dataclass(frozen=True)
class HistoryView:
    """What the plots draw from: a frozen prefix of every series."""

    length: int
    step: array[float]
    loss: PyramidView
    smooth: array[float]
    lrs: tuple[tuple[int, PyramidView], ...]  # (group index, its lr column)
    val_step: array[float]
    val_loss: PyramidView

    @property
    def val_length(self) -> int:
        return self.val_loss.length


EMPTY_COLUMN: array[float] = array("d")


def empty_view() -> HistoryView:
    empty = PyramidView(EMPTY_COLUMN, 0, ())
    return HistoryView(0, EMPTY_COLUMN, empty, EMPTY_COLUMN, (), EMPTY_COLUMN, empty)


@dataclass
class History:
    """Metric columns read from a run store, with the smoothed loss and pyramids."""

    ema_beta: float = 0.98
    metrics: MetricColumns = field(default_factory=MetricColumns)
    smooth: array[float] = field(default_factory=lambda: array("d"))
    val_step: array[float] = field(default_factory=lambda: array("d"))
    val_loss: array[float] = field(default_factory=lambda: array("d"))
    val_last_id: int = 0
    _ema: Ema | None = None
    _pyramids: dict[str, Pyramid] = field(default_factory=dict)

    def read(self, reader: RunReader) -> bool:
        """Take every new metric and validation row from ``reader``; True if any came."""
        before = (self.metrics.length, len(self.val_step))
        reader.read_metrics(into=self.metrics)
        for row_id, step, _epoch, loss in reader.val(self.val_last_id):
            self.val_step.append(float(step))
            self.val_loss.append(math.nan if loss is None else float(loss))
            self.val_last_id = row_id
        if (self.metrics.length, len(self.val_step)) == before:
            return False
        self._derive(before[0])
        return True

    def _derive(self, old_length: int) -> None:
        cols = self.metrics.columns
        n = self.metrics.length
        loss = cols.get("loss")
        if loss is not None:
            if self._ema is None:
                self._ema = Ema(self.ema_beta)
            self._ema.extend(loss, len(self.smooth), self.smooth)
        for name in self._series_names():
            self._pyramids.setdefault(name, Pyramid()).update(cols[name], n)
        self._pyramids.setdefault("val", Pyramid()).update(self.val_loss, len(self.val_loss))

    def _series_names(self) -> list[str]:
        return [k for k in self.metrics.columns if k == "loss" or k.startswith("lr/")]

    def _pview(self, name: str, col: array[float], n: int) -> PyramidView:
        pyr = self._pyramids.get(name)
        return pyr.view(col, n) if pyr is not None else PyramidView(col, n, ())

    def view(self) -> HistoryView:
        """A frozen view of everything read so far (cheap: no copies)."""
        cols = self.metrics.columns
        n = self.metrics.length
        if n == 0 and not self.val_step:
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
            smooth=self.smooth,
            lrs=tuple(lrs),
            val_step=self.val_step,
            val_loss=self._pview("val", self.val_loss, len(self.val_loss)),
        )
