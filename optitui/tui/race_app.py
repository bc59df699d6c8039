"""The app of ``optitui race --surface``: one screen replaying a finished race.

The CLI and the tests build it with :func:`build_race_app`; it holds plain paths
only (the race ran before, on the torch side).
"""

from __future__ import annotations

from textual.app import App

from optitui.surface.result import SurfaceRace
from optitui.tui.screens.surface_race import SurfaceRaceScreen


class SurfaceRaceApp(App[int]):
    """Replays a surface race until the user quits."""

    TITLE = "optitui race"

    def __init__(self, race: SurfaceRace, *, autoplay: bool = True) -> None:
        super().__init__()
        self.race = race
        self.autoplay = autoplay

    def on_mount(self) -> None:
        self.push_screen(SurfaceRaceScreen(self.race, autoplay=self.autoplay))


def build_race_app(race: SurfaceRace, *, autoplay: bool = True) -> SurfaceRaceApp:
    return SurfaceRaceApp(race, autoplay=autoplay)
