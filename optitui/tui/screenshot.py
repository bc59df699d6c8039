"""Save an SVG screenshot of the dashboard on a run (for docs and bug reports).

    python -m optitui.tui.screenshot RUN_DIR docs/dashboard.svg --size 160x48 --keys l

The dashboard is run headless at the given size, waits until the plots have
drawn the run's whole history, and writes Textual's SVG export. Nothing is
sent to the job.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from optitui.tui.app import build_app


async def screenshot(
    run_dir: Path, output: Path, size: tuple[int, int], keys: tuple[str, ...] = ()
) -> None:
    app = build_app(run_dir)
    async with app.run_test(size=size) as pilot:
        screen = app.dashboard
        while screen.updates == 0:
            await pilot.pause(0.05)
        await pilot.press(*keys)
        while not all(p.shows(p.view.length) for p in screen.plots):
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        output.parent.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(filename=output.name, path=str(output.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="run directory")
    ap.add_argument("output", type=Path, help="SVG file to write")
    ap.add_argument("--size", default="160x48", help="terminal size WxH (160x48)")
    ap.add_argument("--keys", default="", help="view keys to press first, e.g. l (log-y), w")
    args = ap.parse_args()
    w, _, h = args.size.partition("x")
    keys = tuple(k for k in args.keys.split(",") if k)
    if any(k not in ("l", "w", "up", "down") for k in keys):
        ap.error("--keys takes view keys only (l, w, up, down), comma-separated")
    asyncio.run(screenshot(args.run, args.output, (int(w), int(h)), keys))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
