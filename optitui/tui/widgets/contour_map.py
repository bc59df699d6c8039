"""The test function's contour with every racer's path drawn over it, up to one step."""

from __future__ import annotations

from functools import cache

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from optitui.surface.result import SurfaceRace
from optitui.tui.contour import BITS, LEVELS, Dot, Frame, contour, glyph, path_dots


def _ramp(t: float, low: tuple[int, int, int], high: tuple[int, int, int]) -> str:
    r, g, b = (int(a + (z - a) * t) for a, z in zip(low, high, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


_T = tuple(i / (LEVELS - 1) for i in range(LEVELS))
#: each level's shade, from the valley floor (deep blue) up the walls (dark amber): dark
#: enough that the racers' bright paths stand out on every one
LEVEL_BACK = tuple(_ramp(t, (14, 26, 58), (70, 44, 14)) for t in _T)
#: the level lines, a little brighter than the shade they cross
LEVEL_LINE = tuple(_ramp(t, (60, 90, 150), (150, 110, 50)) for t in _T)
HEAD = "●"
START = "○"
MINIMUM = "★"

#: a cell drawn over the contour: its character and its foreground style
Cell = tuple[str, str]


@cache
def _style(fore: str, level: int) -> Style:
    return Style.parse(f"{fore} on {LEVEL_BACK[level]}")


class ContourMap(Widget):
    """Draws ``race`` after ``step`` steps: paths in the racers' colours, each racer's
    position as a dot, the start and the minima marked.

    Drawn line by line: rows that nothing crosses are the contour's, built once per
    size, and the paths grow by the steps added since the last frame (a replay going
    forward costs the new steps only).
    """

    DEFAULT_CSS = """
    ContourMap {
        width: 1fr;
        height: 1fr;
    }
    """

    def __init__(
        self, race: SurfaceRace, palette: tuple[str, ...], *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.race = race
        self.palette = palette
        self.step = 0
        self._laid_size: Size | None = None
        self._grid: Frame | None = None
        self._cells: list[list[tuple[int, int]]] = []  # (bits, level) of the contour
        self._base: list[Strip] = []
        self._racer_dots: list[list[list[Dot]]] = []
        # cell -> (racer, bits): the racer that crossed a cell last owns it
        self._trail: dict[Dot, tuple[int, int]] = {}
        self._trail_step = -1  # the step the trail is drawn up to
        self._rows: dict[int, dict[int, Cell]] = {}  # row -> column -> what is drawn there
        self._rows_step = -1

    def show(self, step: int) -> None:
        self.step = step
        self.refresh()

    def _layout(self) -> Frame:
        """Contour, its rows and the path dots for this size, computed once per size."""
        size = self.size
        if self._grid is None or size != self._laid_size:
            self._laid_size = size
            self._grid = grid = Frame.of(self.race.surface, size.width, size.height)
            self._cells = contour(self.race.surface, grid)
            self._base = [self._strip(r, {}) for r in range(grid.rows)]
            self._racer_dots = [path_dots(grid, r.path) for r in self.race.racers]
            self._trail, self._trail_step, self._rows_step = {}, -1, -1
        return self._grid

    def _grow_trail(self) -> None:
        if self.step < self._trail_step:  # going back: draw again from the start
            self._trail, self._trail_step = {}, -1
        for t in range(self._trail_step + 1, self.step + 1):
            for i, dots in enumerate(self._racer_dots):
                if t >= len(dots):
                    continue
                for u, v in dots[t]:
                    key = (u // 2, v // 4)
                    owner, bits = self._trail.get(key, (i, 0))
                    self._trail[key] = (i, (bits if owner == i else 0) | BITS[u % 2][v % 4])
        self._trail_step = self.step

    def _overlay(self, grid: Frame) -> dict[int, dict[int, Cell]]:
        """What is drawn over the contour at this step, by row and column."""
        if self._rows_step == self.step:
            return self._rows
        self._grow_trail()
        rows: dict[int, dict[int, Cell]] = {}
        for (c, r), (i, bits) in self._trail.items():
            rows.setdefault(r, {})[c] = (glyph(bits), self.palette[i])
        marks: list[tuple[Dot | None, Cell]] = [
            (grid.cell(*self.race.start), (START, "bold white"))
        ]
        marks += [(grid.cell(*m), (MINIMUM, "bold #ffffff")) for m in self.race.surface.minima]
        for i, racer in enumerate(self.race.racers):
            if not racer.diverged_by(self.step):
                marks.append(
                    (grid.cell(*racer.point(self.step)), (HEAD, f"bold {self.palette[i]}"))
                )
        for cell, drawn in marks:
            if cell is not None:
                rows.setdefault(cell[1], {})[cell[0]] = drawn
        self._rows, self._rows_step = rows, self.step
        return rows

    def _strip(self, row: int, over: dict[int, Cell]) -> Strip:
        """One row: the contour's cells, with ``over`` drawn on top; equal styles merged."""
        segments: list[Segment] = []
        run: list[str] = []
        run_style: Style | None = None
        for c, (bits, level) in enumerate(self._cells[row]):
            ch, fore = over.get(c) or (glyph(bits), LEVEL_LINE[level])
            style = _style(fore, level)
            if style is not run_style and run:
                segments.append(Segment("".join(run), run_style))
                run = []
            run_style = style
            run.append(ch)
        if run:
            segments.append(Segment("".join(run), run_style))
        return Strip(segments, len(self._cells[row]))

    def render_line(self, y: int) -> Strip:
        if not self.size.area:
            return Strip.blank(0)
        grid = self._layout()
        if y >= grid.rows:
            return Strip.blank(self.size.width)
        over = self._overlay(grid).get(y)
        return self._strip(y, over) if over else self._base[y]
