"""End to end in a real terminal (tmux): `optitui attach LIVE FINISHED` draws the finished
run over the live one, X and b work, and the keys steer the live run only."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from test_tui_e2e import Tmux, applied, braille, tmux, wait_for
from tui_support import TINY_JOB, write_fixed_store

from optitui.launch import JobOptions, start_job
from optitui.tui.overlay import short_names

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]
__all__ = ["tmux"]  # the fixture, shared with test_tui_e2e

#: the first overlay's colour (rose) as a truecolor or a 256-colour terminal gets it,
#: followed by a braille dot: a curve drawn in it, not only the legend's glyph
ROSE_DOT = re.compile(r"\x1b\[[0-9;]*(?:38;2;255;95;135|38;5;204)m[\u2801-\u28ff]")


def test_attach_draws_a_finished_run_over_a_live_one(tmux: Tmux, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    script = tmp_path / "tiny.py"
    script.write_text(TINY_JOB)
    # the finished run: a store as a job leaves it (another lr, higher losses)
    done, _ = write_fixed_store(root / "tiny-lr0.03", steps=300, state="finished", loss_scale=3)
    live = start_job(
        JobOptions(script, device="cpu", root=root, run_dir=root / "tiny-lr0.01"), timeout=60
    )
    me, other = short_names([live.paths.root.name, done.root.name])
    assert (me, other) == ("lr0.01", "lr0.03")

    py = shlex.quote(sys.executable)
    runs = f"{live.paths.root.name} {done.root.name}"
    tmux.start("cmp", f"{py} -m optitui attach --root {shlex.quote(str(root))} {runs}")
    tmux("set-option", "-t", "cmp", "remain-on-exit", "on")  # a refusal stays readable

    def legends() -> str | None:
        screen = tmux.screen("cmp")
        # both plots' legends name the overlaid run, and both plots have curves
        return screen if screen.count(f"━ {other}") == 2 and braille(screen) > 150 else None

    screen = wait_for(legends, 60, "both plots with the overlay", lambda: tmux.screen("cmp"))
    assert "tiny-lr0.01" in screen.splitlines()[0]  # the keys steer the first run
    assert f"overlaid as {other}: tiny-lr0.03" in screen
    colored = tmux("capture-pane", "-p", "-e", "-t", "cmp")
    assert ROSE_DOT.search(colored), "the overlaid run's curve is drawn in its colour"
    # X: both runs by wall time since their first step
    tmux.keys("cmp", "X")
    wait_for(lambda: re.search(r"\n\s*0s\s", tmux.screen("cmp")), 30, "ticks in seconds")
    tmux.keys("cmp", "X")
    wait_for(lambda: not re.search(r"\n\s*0s\s", tmux.screen("cmp")), 30, "ticks in steps")
    # b: the browser lists both, the steered one and the overlaid one marked
    tmux.keys("cmp", "b")

    def browser() -> str | None:
        screen = tmux.screen("cmp")
        return screen if "2 runs" in screen else None

    listed = wait_for(browser, 30, "the runs browser", lambda: tmux.screen("cmp"))
    rows = {line.split()[2]: line for line in listed.splitlines() if "tiny-lr" in line}
    assert "●" in rows["tiny-lr0.01"] and "running" in rows["tiny-lr0.01"]
    assert "━" in rows["tiny-lr0.03"] and "finished" in rows["tiny-lr0.03"]
    tmux.keys("cmp", "Escape")
    wait_for(lambda: "2 runs" not in tmux.screen("cmp"), 30, "the browser closed")
    # the keys steer the live run; the finished one gets nothing
    tmux.keys("cmp", "+")
    wait_for(lambda: applied(live.paths.root), 30, "the live run's command applied")
    assert applied(done.root) == []
    # 80x24: one plot at a time, the overlay still named
    tmux("resize-window", "-t", "cmp", "-x", "80", "-y", "24")

    def narrow() -> str | None:
        # (a frame captured while the resized screen is being drawn has its legend and
        # key bar before its curves: wait for the curves too)
        screen = tmux.screen("cmp")
        drawn = "p plot" in screen and f"━ {other}" in screen and braille(screen) > 100
        return screen if drawn else None

    wait_for(narrow, 30, "the narrow dashboard with its curves", lambda: tmux.screen("cmp"))
