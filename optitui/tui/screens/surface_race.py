"""The optimizer race on a test function: paths animated over the contour, a leaderboard
beside them. The race is already run; this screen replays it step by step."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer

from optitui.surface.result import SurfaceRace
from optitui.tui.widgets.contour_map import ContourMap
from optitui.tui.widgets.race_board import RaceBoard

#: frames per second of the replay
FPS = 20
#: how long a replay of the whole race takes at speed 1
REPLAY_S = 8.0
#: the board's width beside the map, from 100 columns on and below
WIDE_BOARD = 44
NARROW_BOARD = 34
#: bright, mutually distinct colours, one per racer (over the dim contour)
COLORS = (
    "#ff5555",
    "#50fa7b",
    "#f1fa8c",
    "#8be9fd",
    "#ff79c6",
    "#bd93f9",
    "#ffb86c",
    "#ffffff",
    "#5f87ff",
    "#d7af5f",
    "#5fd7af",
    "#d75f87",
)


class SurfaceRaceScreen(Screen[None]):
    """Replays ``race``; space pauses, arrows step, home/end jump, +/- change the speed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "play_pause", "play/pause"),
        Binding("left", "nudge(-1)", "back", key_display="←"),
        Binding("right", "nudge(1)", "forward", key_display="→"),
        Binding("home", "jump(0)", "start", show=False),
        Binding("end", "jump(-1)", "end", show=False),
        Binding("plus,equals_sign", "speed(2)", "faster", key_display="+"),
        Binding("minus", "speed(0.5)", "slower", key_display="-"),
        Binding("q,escape", "app.quit", "quit"),
    ]

    def __init__(self, race: SurfaceRace, *, autoplay: bool = True) -> None:
        super().__init__()
        self.race = race
        colors = tuple(COLORS[i % len(COLORS)] for i in range(len(race.racers)))
        self.map = ContourMap(race, colors, id="contour")
        self.board = RaceBoard(race, colors, id="board")
        self.position = 0.0  # the step shown, kept fractional so slow speeds advance
        self.speed = 1.0
        self.playing = autoplay
        self._timer: Timer | None = None

    @property
    def step(self) -> int:
        return int(self.position)

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield self.map
            yield self.board
        yield Footer()

    def on_resize(self) -> None:
        # a narrow terminal gives the map the room: the board drops its f column
        self.board.styles.width = WIDE_BOARD if self.size.width >= 100 else NARROW_BOARD

    def on_mount(self) -> None:
        self._timer = self.set_interval(1 / FPS, self._tick, pause=not self.playing)
        self._show()

    def _tick(self) -> None:
        per_frame = max(self.race.steps, 1) / (REPLAY_S * FPS) * self.speed
        self.position = min(float(self.race.steps), self.position + per_frame)
        if self.step >= self.race.steps:
            self._set_playing(False)
        self._show()

    def _show(self) -> None:
        self.map.show(self.step)
        self.board.show(self.step, self.playing)

    def _set_playing(self, playing: bool) -> None:
        self.playing = playing
        if self._timer is not None:
            if playing:
                self._timer.resume()
            else:
                self._timer.pause()

    def action_play_pause(self) -> None:
        if not self.playing and self.step >= self.race.steps:
            self.position = 0.0  # at the end, play means replay
        self._set_playing(not self.playing)
        self._show()

    def action_nudge(self, by: int) -> None:
        self._set_playing(False)
        self.position = float(min(self.race.steps, max(0, self.step + by)))
        self._show()

    def action_jump(self, to: int) -> None:
        self._set_playing(False)
        self.position = float(self.race.steps if to < 0 else to)
        self._show()

    def action_speed(self, factor: float) -> None:
        self.speed = min(64.0, max(1 / 64, self.speed * factor))
        self.notify(f"speed x{self.speed:g}", timeout=1.5)
