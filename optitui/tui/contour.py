"""A 2D function's contour and paths over it, in braille dots (2 x 4 per terminal cell).

Pure computation, no Textual: which dots of which cell are set, and at what contour
level. A braille dot is about as wide as it is high, so a cell holds a 2 x 4 grid
of nearly square pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optitui.surface.functions import Point, Surface

#: the bit of dot (column, row) inside a braille cell (U+2800 + bits)
BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
BLANK = 0x2800
#: contour levels drawn across the view
LEVELS = 14

Dot = tuple[int, int]


def glyph(bits: int) -> str:
    return chr(BLANK + bits)


@dataclass(frozen=True)
class Frame:
    """The view box of a surface laid over ``cols`` x ``rows`` cells."""

    x0: float
    x1: float
    y0: float
    y1: float
    cols: int
    rows: int

    @classmethod
    def of(cls, surface: Surface, cols: int, rows: int) -> Frame:
        x0, x1, y0, y1 = surface.view
        return cls(x0, x1, y0, y1, max(1, cols), max(1, rows))

    @property
    def width(self) -> int:
        """Dots across."""
        return self.cols * 2

    @property
    def height(self) -> int:
        """Dots down."""
        return self.rows * 4

    def to_dot(self, x: float, y: float) -> tuple[float, float]:
        """Continuous dot coordinates of a point: x to the right, y downwards."""
        u = (x - self.x0) / (self.x1 - self.x0) * (self.width - 1)
        v = (self.y1 - y) / (self.y1 - self.y0) * (self.height - 1)
        return u, v

    def to_point(self, u: float, v: float) -> Point:
        x = self.x0 + u / (self.width - 1) * (self.x1 - self.x0) if self.width > 1 else self.x0
        y = self.y1 - v / (self.height - 1) * (self.y1 - self.y0) if self.height > 1 else self.y1
        return x, y

    def cell(self, x: float, y: float) -> Dot | None:
        """The cell (column, row) holding a point, or None outside the view."""
        u, v = self.to_dot(x, y)
        if not (0 <= u <= self.width - 1 and 0 <= v <= self.height - 1):
            return None
        return round(u) // 2, round(v) // 4


def levels(surface: Surface, frame: Frame) -> list[list[int]]:
    """The contour level of every dot: the view's values from its minimum up, on a log
    scale (valleys get as many lines as walls), cut into LEVELS bands."""
    low = surface.low
    grid = []
    for v in range(frame.height):
        row = []
        for u in range(frame.width):
            x, y = frame.to_point(u, v)
            try:
                row.append(math.log1p(max(0.0, surface.value(x, y) - low)))
            except (OverflowError, ValueError):
                row.append(math.inf)
        grid.append(row)
    finite = sorted(g for row in grid for g in row if math.isfinite(g))
    if not finite:
        return [[0] * frame.width for _ in range(frame.height)]
    top = finite[int(0.98 * (len(finite) - 1))]  # a few huge corners must not flatten the rest
    span = (top - finite[0]) or 1.0
    return [[min(LEVELS - 1, int((g - finite[0]) / span * LEVELS)) for g in row] for row in grid]


def contour(surface: Surface, frame: Frame) -> list[list[tuple[int, int]]]:
    """(bits, level) of every cell: a dot is set where the level changes to its right or
    below it, so the set dots trace the level lines."""
    lv = levels(surface, frame)
    cells = [[(0, 0)] * frame.cols for _ in range(frame.rows)]
    for r in range(frame.rows):
        for c in range(frame.cols):
            bits = 0
            for dc in range(2):
                for dr in range(4):
                    u, v = c * 2 + dc, r * 4 + dr
                    here = lv[v][u]
                    right = lv[v][u + 1] if u + 1 < frame.width else here
                    below = lv[v + 1][u] if v + 1 < frame.height else here
                    if here != right or here != below:
                        bits |= BITS[dc][dr]
            cells[r][c] = (bits, lv[min(frame.height - 1, r * 4 + 2)][c * 2])
    return cells


def _clip(frame: Frame, a: tuple[float, float], b: tuple[float, float]) -> list[float] | None:
    """Liang-Barsky: the part of segment a-b inside the dot box, as (t0, t1), or None."""
    (u0, v0), (u1, v1) = a, b
    du, dv = u1 - u0, v1 - v0
    t0, t1 = 0.0, 1.0
    for p, q in (
        (-du, u0),
        (du, frame.width - 1 - u0),
        (-dv, v0),
        (dv, frame.height - 1 - v0),
    ):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return [t0, t1]


def segment(frame: Frame, p: Point, q: Point) -> list[Dot]:
    """The dots of the straight line from p to q, the part inside the view only."""
    a, b = frame.to_dot(*p), frame.to_dot(*q)
    if not all(math.isfinite(z) for z in (*a, *b)):
        return []
    span = _clip(frame, a, b)
    if span is None:
        return []
    t0, t1 = span
    ua, va = a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0
    ub, vb = a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1
    n = int(max(abs(ub - ua), abs(vb - va))) + 1
    dots = []
    for i in range(n + 1):
        t = i / n
        dots.append((round(ua + (ub - ua) * t), round(va + (vb - va) * t)))
    return dots


def path_dots(frame: Frame, path: tuple[Point, ...]) -> list[list[Dot]]:
    """The dots each step adds to a path: entry t is the line from point t-1 to point t
    (entry 0: the start point itself)."""
    out = [segment(frame, path[0], path[0])]
    out.extend(segment(frame, path[t - 1], path[t]) for t in range(1, len(path)))
    return out
