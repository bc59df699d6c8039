"""Min/max pyramids: decimating a long series to a plot's width in time independent of length.

A pyramid keeps, for a growing column of floats, the min and max of every
block of 64, 512, 4096, ... consecutive values. The min and max of any index
range then costs a handful of short slices per level, so splitting a million
points into 100 plot columns reads a few thousand numbers, not a million.
Blocks are only ever appended, which is what lets a reader thread extend a
pyramid while the UI thread reads a view of it (see :class:`PyramidView`).

NaN never wins a min or max (a NaN-only range has no extent); infinities are
kept and filtered when points are emitted.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from optitui.tui.bulk import numpy

#: values per block at level 1 (from the raw column), then per block above.
#: 64 raw values per slice keeps the first pass cheap (one C-level min per block)
FIRST = 64
FACTOR = 8
INF = math.inf
#: a first-level pass over this many values or more goes through numpy: for a million
#: values about 5 ms against 120 ms for a min and a max per block in Python. Shorter
#: passes (a live run's updates, a short run) never import it, which costs 0.1-0.2 s
NUMPY_FROM = 1 << 15


def _min(seg: array[float]) -> float:
    """min ignoring NaN (builtin min returns NaN only when the first value is NaN)."""
    if not seg:
        return INF
    m = min(seg)
    if m != m:
        return min((x for x in seg if x == x), default=INF)
    return m


def _max(seg: array[float]) -> float:
    if not seg:
        return -INF
    m = max(seg)
    if m != m:
        return max((x for x in seg if x == x), default=-INF)
    return m


def _blocks(
    src: array[float], lo: int, hi: int, size: int, fn: Callable[..., float]
) -> array[float]:
    """fn over each block of ``size`` values of src[lo:hi] (hi - lo a multiple of size)."""
    if size <= FACTOR:  # few values per block: one call with them all as arguments
        return array("d", map(fn, *(src[lo + j : hi : size] for j in range(size))))
    return array("d", map(fn, (src[i : i + size] for i in range(lo, hi, size))))


@dataclass(frozen=True)
class Level:
    mins: array[float]
    maxs: array[float]
    length: int
    factor: int  # values of the level below per block of this one


@dataclass(frozen=True)
class PyramidView:
    """A frozen prefix of a raw column and its pyramid: safe to read while both grow."""

    raw: array[float]
    length: int
    levels: tuple[Level, ...]

    def minmax(self, start: int, stop: int) -> tuple[float, float]:
        """(min, max) of raw[start:stop], NaN ignored; (inf, -inf) when nothing is finite."""
        lo_arr = hi_arr = self.raw
        mn, mx = INF, -INF
        s, e = max(0, start), min(stop, self.length)
        for level in self.levels:
            f = level.factor
            if e - s < 2 * f:
                break
            su = -(-s // f)
            eu = min(e // f, level.length)
            if su >= eu:
                break
            if s < su * f:
                mn = min(mn, _min(lo_arr[s : su * f]))
                mx = max(mx, _max(hi_arr[s : su * f]))
            if eu * f < e:
                mn = min(mn, _min(lo_arr[eu * f : e]))
                mx = max(mx, _max(hi_arr[eu * f : e]))
            s, e = su, eu
            lo_arr, hi_arr = level.mins, level.maxs
        if s < e:
            mn = min(mn, _min(lo_arr[s:e]))
            mx = max(mx, _max(hi_arr[s:e]))
        return mn, mx


class Pyramid:
    """The min/max pyramid of one append-only column. Extended by one thread only."""

    def __init__(self) -> None:
        self.mins: list[array[float]] = []
        self.maxs: list[array[float]] = []

    @staticmethod
    def factor(level: int) -> int:
        return FIRST if level == 0 else FACTOR

    def update(self, raw: array[float], length: int) -> None:
        """Add the blocks completed since the last update (raw[:length] is final)."""
        src_lo = src_hi = raw
        src_len = length
        k = 0
        while src_len // self.factor(k):
            f = self.factor(k)
            if k == len(self.mins):
                self.mins.append(array("d"))
                self.maxs.append(array("d"))
            have, want = len(self.mins[k]), src_len // f
            if want > have:
                lo, hi = have * f, want * f
                mins, maxs = _first_level(raw, lo, hi) if k == 0 else _level(src_lo, src_hi, lo, hi)
                self.mins[k].extend(mins)
                self.maxs[k].extend(maxs)
            src_lo, src_hi, src_len = self.mins[k], self.maxs[k], want
            k += 1

    def view(self, raw: array[float], length: int) -> PyramidView:
        levels = tuple(
            Level(lo, hi, len(lo), self.factor(k))
            for k, (lo, hi) in enumerate(zip(self.mins, self.maxs, strict=True))
        )
        return PyramidView(raw, length, levels)


def _first_level(raw: array[float], lo: int, hi: int) -> tuple[array[float], array[float]]:
    """The first level's mins and maxs of raw[lo:hi], NaN never winning."""
    if hi - lo >= NUMPY_FROM and type(raw) is array:  # not an array read on demand
        mins, maxs = _first_level_numpy(raw, lo, hi)
        if mins is not None and maxs is not None:
            return mins, maxs
    lows, highs = _clean(raw, lo, hi)
    return _level(lows, highs, 0, hi - lo, FIRST)


def _level(
    lows: array[float], highs: array[float], lo: int, hi: int, size: int = FACTOR
) -> tuple[array[float], array[float]]:
    """The mins of lows and the maxs of highs over each block of ``size`` in [lo, hi)."""
    value = _constant(lows, lo, hi)
    if value is not None and (lows is highs or _constant(highs, lo, hi) == value):
        run = array("d", [value]) * ((hi - lo) // size)  # an lr without a schedule
        return run, run
    return _blocks(lows, lo, hi, size, min), _blocks(highs, lo, hi, size, max)


def _first_level_numpy(
    raw: array[float], lo: int, hi: int
) -> tuple[array[float], array[float]] | tuple[None, None]:
    """The first level's mins and maxs of raw[lo:hi] through numpy, the same values the
    Python pass gives (NaN never wins; a block of NaN only is +inf / -inf); (None, None)
    without numpy."""
    np = numpy()
    if np is None:
        return None, None
    # a view of raw's buffer: it must be gone before the caller's thread extends raw
    blocks = np.frombuffer(raw, dtype=np.float64, count=hi - lo, offset=lo * raw.itemsize)
    blocks = blocks.reshape(-1, FIRST)
    lows, highs = np.fmin.reduce(blocks, axis=1), np.fmax.reduce(blocks, axis=1)
    del blocks
    lows[np.isnan(lows)] = INF
    highs[np.isnan(highs)] = -INF
    mins, maxs = array("d"), array("d")
    mins.frombytes(lows.tobytes())
    maxs.frombytes(highs.tobytes())
    return mins, maxs


def _clean(raw: array[float], lo: int, hi: int) -> tuple[array[float], array[float]]:
    """raw[lo:hi] for the min and max passes; NaN becomes +inf / -inf so it never wins."""
    chunk = raw[lo:hi]
    if math.isfinite(sum(chunk)):  # the common case: one fast pass, no copies
        return chunk, chunk
    lows = array("d", (x if x == x else INF for x in chunk))
    highs = array("d", (x if x == x else -INF for x in chunk))
    return lows, highs


def _constant(src: array[float], lo: int, hi: int) -> float | None:
    """The value of src[lo:hi] when all of it is one finite value, else None."""
    first, last = src[lo], src[hi - 1]
    if first != last or not math.isfinite(first):
        return None
    return first if src[lo:hi].count(first) == hi - lo else None
