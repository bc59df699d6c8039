"""Save an SVG screenshot of the dashboard on a run (for docs and bug reports).

    python -m optitui.tui.screenshot RUN_DIR docs/dashboard.svg --size 160x48 --keys l

The dashboard is run headless at the given size, waits until the plots have
drawn the run's whole history, and writes Textual's SVG export. Nothing is
sent to the job.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

from optitui.store.reader import RunUnreadable, open_reader
from optitui.tui.app import build_app

#: how long the dashboard may take to draw the run before the screenshot gives up
DRAW_TIMEOUT_S = 120.0


class ScreenshotError(Exception):
    """The run cannot be shown; the message is one line saying why."""


#: the keys --keys takes (as typed: their Textual names)
VIEW_KEYS = {
    "l": "l",
    "w": "w",
    "[": "left_square_bracket",
    "]": "right_square_bracket",
    "comma": "comma",
    "full_stop": "full_stop",
    "0": "0",
    "up": "up",
    "down": "down",
    "m": "m",  # the metrics screen
}


async def screenshot(
    run_dir: Path,
    output: Path,
    size: tuple[int, int],
    keys: tuple[str, ...] = (),
    timeout: float = DRAW_TIMEOUT_S,
) -> None:
    try:  # the checks every command makes, before a dashboard waits on the store
        with open_reader(run_dir) as reader:
            problem = reader.schema_problem()
    except (RunUnreadable, sqlite3.Error, OSError) as exc:
        raise ScreenshotError(str(exc)) from None
    if problem is not None:
        raise ScreenshotError(f"{run_dir}: {problem}")
    app = build_app(run_dir)
    deadline = time.monotonic() + timeout
    async with app.run_test(size=size) as pilot:
        screen = app.dashboard

        async def until(done: Callable[[], bool], what: str) -> None:
            while not done():
                if time.monotonic() > deadline:
                    raise ScreenshotError(f"{run_dir}: {what} within {timeout:g} s")
                await pilot.pause(0.05)

        await until(lambda: screen.updates > 0, "the dashboard read nothing")
        await pilot.press(*keys)
        await until(
            lambda: all(p.shows(p.view.length) for p in screen.plots),
            "the plots were not drawn",
        )
        await pilot.pause(0.2)
        output.parent.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(filename=output.name, path=str(output.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="run directory")
    ap.add_argument("output", type=Path, help="SVG file to write")
    ap.add_argument("--size", default="160x48", help="terminal size WxH (160x48)")
    ap.add_argument(
        "--keys",
        default="",
        help="view keys to press first, comma-separated: l (log-y), w, [ ] (zoom), "
        "comma and full_stop (pan), 0, up, down, m (the metrics screen)",
    )
    args = ap.parse_args()
    w, _, h = args.size.partition("x")
    keys = tuple(VIEW_KEYS.get(k, k) for k in args.keys.split(",") if k)
    if any(k not in VIEW_KEYS.values() for k in keys):
        ap.error(f"--keys takes view keys only ({', '.join(VIEW_KEYS)}), comma-separated")
    try:
        asyncio.run(screenshot(args.run, args.output, (int(w), int(h)), keys))
    except ScreenshotError as exc:
        print(f"optitui: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
