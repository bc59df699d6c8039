"""The race's leaderboard: every racer's distance to the minimum after the step shown."""

from __future__ import annotations

from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

from optitui.surface.result import SurfaceRace

NAME_WIDTH = 14


def _num(x: float) -> str:
    return f"{x:.3g}"


def _fit(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _coords(p: tuple[float, float]) -> str:
    return f"({p[0]:g}, {p[1]:g})"


class RaceBoard(Widget):
    """The surface, the step, and the racers nearest first; each racer's settings on a
    line under it when the board has the room."""

    DEFAULT_CSS = """
    RaceBoard {
        width: 44;  /* the screen narrows it below 100 columns */
        height: 1fr;
        padding: 0 1;
    }
    """

    def __init__(
        self, race: SurfaceRace, colors: tuple[str, ...], *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.race = race
        self.palette = colors
        self.step = 0
        self.playing = False

    def show(self, step: int, playing: bool) -> None:
        self.step = step
        self.playing = playing
        self.refresh()

    def render(self) -> RenderResult:
        race, s = self.race, self.race.surface
        text = Text(no_wrap=True, overflow="ellipsis")
        state = "" if self.playing else "  done" if self.step >= race.steps else "  paused"
        text.append(s.name, "bold")
        text.append(f"   step {self.step}/{race.steps}{state}\n")
        text.append(f"f = {s.formula}\n", "dim")
        text.append(f"○ start {_coords(race.start)}  ★ min {s.where}\n", "dim")
        x0, x1, y0, y1 = s.view
        text.append(f"x {x0:g} to {x1:g}, y {y0:g} to {y1:g}\n\n", "dim")
        wide = self.size.width >= 42  # room for the f column
        f_head = f" {'f(x, y)':>9}" if wide else ""
        text.append(f" #    {'racer':<{NAME_WIDTH}} {'distance':>9}{f_head}\n", "bold")
        rows = race.standings(self.step)
        # a settings line under each racer when the board fits them with its header (6 to
        # 7 lines) and the note under the table (3)
        detail = self.size.height >= 10 + 2 * len(rows)
        for place, st in enumerate(rows, 1):
            r = race.racers[st.index]
            text.append(f"{place:>2} ")
            text.append("●", self.palette[st.index])
            text.append(f"  {_fit(r.name, NAME_WIDTH):<{NAME_WIDTH}} ")
            if st.diverged:
                gone = (
                    f"diverged at {r.diverged_at}"
                    if not wide
                    else f"diverged at step {r.diverged_at}"
                )
                text.append(f"{gone:>{19 if wide else 9}}\n", "red")
            else:
                f_cell = f" {_num(st.value):>9}" if wide else ""
                text.append(f"{_num(st.distance):>9}{f_cell}\n")
            if detail:
                text.append(f"     {r.describe()}\n", "dim")
        text.append("\n")
        text.append(s.about, "italic dim")
        return text
