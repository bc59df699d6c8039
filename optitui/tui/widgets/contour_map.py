"""The test function's contour with every racer's path drawn over it, up to one step."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.geometry import Size
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


class ContourMap(Widget):
    """Draws ``race`` after ``step`` steps: paths in the racers' colours, each racer's
    position as a dot, the start and the minima marked."""

    DEFAULT_CSS = """
    ContourMap {
        width: 1fr;
        height: 1fr;
    }
    """

    def __init__(
        self, race: SurfaceRace, colors: tuple[str, ...], *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.race = race
        self.palette = colors
        self.step = 0
        self._laid_size: Size | None = None
        self._grid: Frame | None = None
        self._cells: list[list[tuple[int, int]]] = []
        self._racer_dots: list[list[list[Dot]]] = []

    def show(self, step: int) -> None:
        self.step = step
        self.refresh()

    def _layout(self, size: Size) -> Frame:
        """Contour and path dots for this size, computed once per size."""
        if self._grid is None or size != self._laid_size:
            self._laid_size = size
            self._grid = Frame.of(self.race.surface, size.width, size.height)
            self._cells = contour(self.race.surface, self._grid)
            self._racer_dots = [path_dots(self._grid, r.path) for r in self.race.racers]
        return self._grid

    def render(self) -> RenderResult:
        size = self.size
        if not size.area:
            return Text()
        frame = self._layout(size)
        # cell -> (racer, bits): the last racer drawn in a cell owns it
        trail: dict[Dot, tuple[int, int]] = {}
        for i, dots in enumerate(self._racer_dots):
            for seg in dots[: self.step + 1]:
                for u, v in seg:
                    key = (u // 2, v // 4)
                    owner, bits = trail.get(key, (i, 0))
                    trail[key] = (i, (bits if owner == i else 0) | BITS[u % 2][v % 4])
        marks: dict[Dot, tuple[str, str]] = {}
        start = frame.cell(*self.race.start)
        if start is not None:
            marks[start] = (START, "bold white")
        for m in self.race.surface.minima:
            cell = frame.cell(*m)
            if cell is not None:
                marks[cell] = (MINIMUM, "bold #ffffff")
        for i, r in enumerate(self.race.racers):
            cell = None if r.diverged_by(self.step) else frame.cell(*r.point(self.step))
            if cell is not None:
                marks[cell] = (HEAD, f"bold {self.palette[i]}")
        return self._text(frame, trail, marks)

    def _text(
        self, frame: Frame, trail: dict[Dot, tuple[int, int]], marks: dict[Dot, tuple[str, str]]
    ) -> Text:
        text = Text(no_wrap=True, overflow="crop")
        for r in range(frame.rows):
            if r:
                text.append("\n")
            run: list[str] = []
            run_style = ""
            for c in range(frame.cols):
                bits, level = self._cells[r][c]
                back = f" on {LEVEL_BACK[level]}"
                if (c, r) in marks:
                    ch, style = marks[(c, r)]
                elif (c, r) in trail:
                    i, bits = trail[(c, r)]
                    ch, style = glyph(bits), self.palette[i]
                else:
                    ch, style = glyph(bits), LEVEL_LINE[level]
                style += back
                if style != run_style and run:
                    text.append("".join(run), Style.parse(run_style))
                    run = []
                run_style = style
                run.append(ch)
            if run:
                text.append("".join(run), Style.parse(run_style))
        return text
