"""The LR range test's curve: loss against lr (log-x), smoothed, with each suggestion marked."""

from __future__ import annotations

import math
from typing import Any, TypeGuard

from optitui.store.reader import RangeTest
from optitui.tui.widgets.drawn_plot import DrawnPlot

#: each rule's letter and colour, on the plot and in the list under it
MARKS = {"steep": "S", "valley": "V", "minimum": "M", "slide": "L"}
COLORS = {
    "steep": "red",
    "valley": "green",
    "minimum": "blue",
    "slide": "magenta",
}  # plotext and rich both know these
RAW_COLOR = "gray"
SMOOTH_COLOR = "cyan"


def _positive(x: Any) -> TypeGuard[float]:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


class RangePlot(DrawnPlot):
    """Redrawn when a new read of the test arrives; the x axis spans the whole sweep from
    the start, so the curve visibly grows across it."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.test: RangeTest | None = None
        self.points = 0  # curve points in the last frame drawn

    def show(self, test: RangeTest | None) -> None:
        self.test = test
        self.redraw()

    def draw(self, plt: Any) -> None:
        test = self.test
        pts = []
        if test is not None:
            for x, y, r in zip(test.lrs, test.smoothed, test.losses, strict=False):
                if _positive(x) and math.isfinite(y) and math.isfinite(r):
                    pts.append((float(x), float(y), float(r)))
        self.points = len(pts)
        if len(pts) < 2 or test is None:
            plt.title("loss against lr · waiting for the first points")
            return
        plt.title(f"loss against lr · {len(test.lrs)} points · log-x")
        lo, hi = self._x_span(test, pts)
        plt.xscale("log")
        plt.xlim(math.log10(lo), math.log10(hi))  # on a log axis plotext takes log10 limits
        first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        every = max(1, (last - first) // max(2, self.size.width // 12))
        decades = [10.0**e for e in range(first, last + 1, every)]
        plt.xticks(decades, [f"{d:.0e}" for d in decades])
        # a diverging tail would squash the part worth reading: clip at 1.5x the start
        start = pts[0][1]
        top = start * 1.5 if start > 0 else max(p[1] for p in pts)
        low = min(min(p[1], p[2]) for p in pts)
        if top > low:
            plt.ylim(low - 0.05 * (top - low), top)
        xs = [p[0] for p in pts]
        plt.scatter(xs, [min(p[2], top) for p in pts], marker="dot", color=RAW_COLOR, label="loss")
        smooth = [min(p[1], top) for p in pts]
        plt.plot(xs, smooth, marker="braille", color=SMOOTH_COLOR, label="smoothed")
        for s in test.suggestions:
            i, lr, rule = s.get("index"), s.get("lr"), str(s.get("rule"))
            if not _positive(lr) or not isinstance(i, int) or not 0 <= i < len(test.smoothed):
                continue
            y = test.smoothed[i]
            if math.isfinite(y):
                plt.scatter(
                    [float(lr)],
                    [min(float(y), top)],
                    marker=MARKS.get(rule, "x"),
                    color=COLORS.get(rule, "white"),
                    label=f"{rule} {lr:.3g}",
                )

    @staticmethod
    def _x_span(test: RangeTest, pts: list[tuple[float, float, float]]) -> tuple[float, float]:
        """The sweep's configured range when known, else the points' own."""
        lo, hi = test.config.get("start_lr"), test.config.get("end_lr")
        data_lo, data_hi = pts[0][0], pts[-1][0]
        lo = float(lo) if _positive(lo) else data_lo
        hi = float(hi) if _positive(hi) else data_hi
        lo, hi = min(lo, data_lo, data_hi), max(hi, data_lo, data_hi)
        return (lo, hi) if hi > lo else (lo / 10, lo * 10)
