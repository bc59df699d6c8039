"""The surface race's screen: replay, keys, leaderboard, a snapshot, and a real-terminal smoke."""

from __future__ import annotations

import functools
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from tui_support import pilot_test

from optitui.store.candidates import parse_candidate
from optitui.surface.functions import DEFAULT_SET, SURFACES
from optitui.surface.result import SurfaceRace
from optitui.tui.race_app import SurfaceRaceApp, build_race_app
from optitui.tui.screens.surface_race import SurfaceRaceScreen

HEAD = "●"


@functools.cache
def raced(surface: str, steps: int, extra: tuple[str, ...] = ()) -> SurfaceRace:
    """A real race (torch on the CPU, deterministic), computed once per test session."""
    from optitui.trainer.control.surface_race import race

    entries = [(name, parse_candidate(text)) for name, text in DEFAULT_SET]
    entries += [(text, parse_candidate(text)) for text in extra]
    return race(SURFACES[surface], entries, steps=steps)


def screen_of(app: SurfaceRaceApp) -> SurfaceRaceScreen:
    screen = app.screen
    assert isinstance(screen, SurfaceRaceScreen)
    return screen


def board_text(app: SurfaceRaceApp) -> str:
    return str(screen_of(app).board.render())


def map_text(app: SurfaceRaceApp) -> str:
    drawn = screen_of(app).map
    return "\n".join(drawn.render_line(y).text for y in range(drawn.size.height))


@pilot_test
async def test_the_replay_steps_by_keys_and_ranks_by_distance() -> None:
    race = raced("saddle", 20)
    app = build_race_app(race, autoplay=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        assert "step 0/20" in board_text(app)
        # at the start every racer stands on the start point: one head drawn, no trail
        assert map_text(app).count(HEAD) == 1
        await pilot.press("right", "right")
        assert screen_of(app).step == 2 and "step 2/20" in board_text(app)
        await pilot.press("left")
        assert screen_of(app).step == 1
        await pilot.press("end")
        board = board_text(app)
        assert "step 20/20  done" in board
        order = [race.racers[s.index].name for s in race.standings(20)]
        lines = [ln for ln in board.splitlines() if HEAD in ln]
        assert [ln.split(HEAD)[1].split()[0] for ln in lines] == order  # nearest first
        assert f"{race.standings(20)[0].distance:.3g}" in lines[0]
        assert map_text(app).count(HEAD) > 1  # the racers went their ways
        await pilot.press("right")  # stays at the end
        assert screen_of(app).step == 20
        at_end = map_text(app)
        await pilot.press("home", "left")
        assert screen_of(app).step == 0
        assert map_text(app).count(HEAD) == 1
        await pilot.press(*["right"] * 20)  # the trail grown step by step is the one drawn
        assert screen_of(app).step == 20 and map_text(app) == at_end  # from the start


@pilot_test
async def test_space_plays_to_the_end_and_replays() -> None:
    app = build_race_app(raced("saddle", 20), autoplay=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = screen_of(app)
        await pilot.press("plus", "plus", "plus", "plus")  # x16: the race in 0.5 s
        assert screen.step == 0 and not screen.playing
        await pilot.press("space")
        for _ in range(200):
            await pilot.pause(0.05)
            if not screen.playing:
                break
        assert screen.step == 20 and not screen.playing  # stops at the end by itself
        await pilot.press("minus", "minus", "minus", "minus", "space")  # x1: 8 s
        assert screen.playing and screen.step < 20  # at the end, play means replay


@pilot_test
async def test_a_diverged_racer_says_so_on_the_board() -> None:
    race = raced("rosenbrock", 30, ("lr*100",))
    wild = race.racers[-1]
    assert wild.diverged_at is not None
    app = build_race_app(race, autoplay=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("end")
        last = [ln for ln in board_text(app).splitlines() if HEAD in ln][-1]
        assert "lr*100" in last and f"diverged at step {wild.diverged_at}" in last


def test_surface_race_screen_120x36(snap_compare: Any) -> None:
    """The README's screenshot: the default race on Rosenbrock, at its end."""
    app = build_race_app(raced("rosenbrock", SURFACES["rosenbrock"].steps), autoplay=False)
    assert snap_compare(app, terminal_size=(120, 36), press=["end"])


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_smoke_in_a_real_terminal(tmp_path: Path) -> None:
    from test_tui_e2e import Tmux, wait_for

    tmux = Tmux(tmp_path / "tmux.sock")
    done = tmp_path / "exit"
    py = shlex.quote(sys.executable)
    cmd = f"sh -c '{py} -m optitui race --surface beale --steps 30; echo $? > {done}'"
    try:
        tmux.start("race", cmd, size=(100, 30))
        wait_for(lambda: "step" in tmux.screen("race"), 60, "the race", lambda: tmux.screen("race"))
        tmux.keys("race", "End")
        wait_for(
            lambda: "step 30/30  done" in tmux.screen("race"),
            10,
            "the end",
            lambda: tmux.screen("race"),
        )
        screen = tmux.screen("race")
        assert all(name in screen for name, _ in DEFAULT_SET)
        assert any(0x2800 < ord(ch) < 0x2900 for ch in screen)  # the contour, in braille
        tmux.keys("race", "q")
        # the shell creates the file, then writes the status into it
        wait_for(lambda: done.exists() and done.read_text().strip(), 10, "the race to quit")
        assert done.read_text().strip() == "0"
    finally:
        tmux.kill_server()
