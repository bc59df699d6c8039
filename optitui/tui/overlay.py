"""Other runs drawn over the steered run's plots: what the plot widgets take, and the
names and colours that tell the runs apart.

An :class:`Overlay` is data only (a name, a colour, a frozen history view), so any plot
can draw it: the loss plot draws each overlaid run's smoothed loss, the lr plot each of
its groups' lr. Overlays are drawn from their final branch (the rows a checkpoint
restore left behind are not), on the same x axis as the steered run: by step, or by wall
time since each run's first step.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from optitui.tui import decimate
from optitui.tui.decimate import Points
from optitui.tui.history import HistoryView

#: runs drawn over the steered one at most (more would not tell apart by colour)
MAX_OVERLAYS = 8
#: one per overlaid run, in the order they were added: none is a colour of the steered
#: run's loss (gray, cyan, green) or of its first three groups' lr (cyan, orange, green).
#: RGB, so the legend (rich) and the curves (plotext, whose colour names are its own) agree
OVERLAY_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 95, 135),  # rose
    (175, 135, 255),  # violet
    (238, 238, 238),  # white
    (215, 255, 95),  # lime
    (215, 135, 95),  # tan
    (255, 175, 215),  # pink
    (95, 135, 215),  # steel blue
    (175, 175, 0),  # olive
)
#: the longest name a legend gives a run
NAME_CELLS = 18


@dataclass(frozen=True, eq=False)  # told apart by identity: a view is a million values
class Overlay:
    """Another run as the plots draw it: its short name, its colour, its history."""

    name: str
    color: tuple[int, int, int]
    view: HistoryView


# -- names -------------------------------------------------------------------------------
_TAG = re.compile(r"[0-9a-f]{16}")  # the random part of a run directory's name
_DATE = re.compile(r"\d{8}")
_TIME = re.compile(r"\d{6}")


def _words(name: str) -> tuple[list[str], str]:
    """A run name's words (split at '-', times of day written 12:26:40) and its random
    tag ('' when it has none)."""
    words = name.split("-")
    tag = ""
    if len(words) > 1 and _TAG.fullmatch(words[-1]):
        tag = words.pop()
    for i in range(1, len(words)):
        if _DATE.fullmatch(words[i - 1]) and _TIME.fullmatch(words[i]):
            t = words[i]
            words[i] = f"{t[:2]}:{t[2:4]}:{t[4:]}"
    return words, tag


def without_tag(name: str) -> str:
    """A run name less the random tag at its end (``digits-20260921-122640``)."""
    head, _, tail = name.rpartition("-")
    return head if head and _TAG.fullmatch(tail) else name


def cut(name: str, most: int) -> str:
    """``name`` in at most ``most`` cells: its middle left out."""
    if len(name) <= most:
        return name
    keep = most - 1
    return name[: (keep + 1) // 2] + "…" + name[len(name) - keep // 2 :]


def short_names(names: Sequence[str], most: int = NAME_CELLS) -> list[str]:
    """Each run name's distinguishing part, in the same order.

    ``digits-20260921-122640-<tag>`` and ``digits-20260921-130102-<tag>`` are
    ``12:26:40`` and ``13:01:02``: the words every name has at its start, and at the
    same place from its end, say nothing about which run is which, nor does the random
    tag, unless it is all that differs.
    """
    split = [_words(n) for n in names]
    words = [list(w) for w, _ in split]
    if len(words) > 1:
        while all(len(w) > 1 for w in words) and len({w[0] for w in words}) == 1:
            for w in words:
                del w[0]
        k = 1
        while k <= min(len(w) for w in words):
            if len({w[-k] for w in words}) == 1 and all(len(w) > 1 for w in words):
                for w in words:
                    del w[-k]
            else:
                k += 1
    joined = ["-".join(w) for w in words]
    out = [
        f"{name}-{tag[:4]}" if tag and joined.count(name) > 1 else name
        for name, (_, tag) in zip(joined, split, strict=True)
    ]
    return [cut(n, most) for n in out]


# -- the x axis --------------------------------------------------------------------------
def final_pieces(view: HistoryView) -> list[tuple[int, int]]:
    """Row ranges of the run's final branch, oldest first: the rows a checkpoint restore
    went back from are left out."""
    parts = decimate.segments(0, view.length, view.breaks)
    return [(a, b) for a, b, left in decimate.abandoned(view.step, parts) if not left]


def has_times(view: HistoryView) -> bool:
    """Whether every row has its wall time (an x axis by time needs them)."""
    return view.length > 0 and len(view.time) >= view.length


def x_column(view: HistoryView, by_time: bool) -> array[float]:
    """The column a run's rows are placed by: their steps, or their wall times."""
    return view.time if by_time and has_times(view) else view.step


def start_time(view: HistoryView) -> float:
    """The wall time of the run's first recorded step (0 when it has none)."""
    return view.time[0] if len(view.time) else 0.0


def step_x(view: HistoryView, step: float, by_time: bool) -> float | None:
    """Where a step is on the x axis: the step itself, or the wall time of the newest row
    with that step (None when no row has it)."""
    if not by_time:
        return step
    if not has_times(view):
        return None
    for a, b in reversed(final_pieces(view)):
        if view.step[a] <= step <= view.step[b - 1]:
            i = min(bisect_left(view.step, step, a, b), b - 1)
            return view.time[i]
    return None


# -- drawing -----------------------------------------------------------------------------
#: (a run's view, its x column, first row, end row, plot columns, log axis) -> its lines
Lines = Callable[[HistoryView, "array[float]", int, int, int, bool], list[Points]]


def extent(ov: Overlay, by_time: bool, origin: float) -> tuple[float, float] | None:
    """The x range an overlaid run covers on the plot (its final branch)."""
    pieces = final_pieces(ov.view)
    if not pieces:
        return None
    x = x_column(ov.view, by_time)
    shift = origin - start_time(ov.view) if by_time else 0.0
    return min(x[a] for a, _ in pieces) + shift, max(x[b - 1] for _, b in pieces) + shift


def overlay_points(
    ov: Overlay,
    lines: Lines,
    x_range: tuple[float, float],
    buckets: int,
    by_time: bool,
    origin: float,
    log: bool,
) -> list[Points]:
    """The lines ``lines`` draws for one overlaid run within ``x_range`` of the plot,
    placed on the steered run's x axis (``origin``: the plot x of time 0)."""
    view = ov.view
    x = x_column(view, by_time)
    shift = origin - start_time(view) if by_time else 0.0
    lo, hi = x_range[0] - shift, x_range[1] - shift
    span = max(x_range[1] - x_range[0], 1e-12)
    out: list[Points] = []
    for a, b in final_pieces(view):
        s, e = bisect_left(x, lo, a, b), bisect_right(x, hi, a, b)
        if e - s < 1:
            continue
        width = max(2, int(buckets * (x[e - 1] - x[s]) / span) + 1)
        for pts in lines(view, x, s, e, width, log):
            if pts:
                if shift:
                    pts = Points([v + shift for v in pts.xs], pts.ys)
                out.append(pts)
    return out
