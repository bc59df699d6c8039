"""``optitui race --surface``: optimizers racing on a 2D test function, no data, no model."""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from typing import Any

from optitui.cli.common import err, has_terminal, positive_int
from optitui.store.candidates import CANDIDATE_HELP
from optitui.store.commands import SWAPPABLE
from optitui.surface.functions import DEFAULT_SET, SURFACES

#: a longer race says nothing a shorter one does not, and its JSON gets large
MAX_STEPS = 20_000
#: the racer that runs first when candidates are named: the base at the surface's lr
BASE = "base"


def add_parser(sub: Any) -> None:
    names = ", ".join(SURFACES)
    defaults = ", ".join(name for name, _ in DEFAULT_SET)
    race = sub.add_parser(
        "race",
        help="race optimizers on a 2D test function and watch their paths (no data, no model)",
        description=_wrap(
            f"Runs each candidate with torch.optim from the same start on a test function "
            f"({names}) and replays their paths over its contour, with a leaderboard of the "
            f"distance to the minimum after every step.",
            f"Candidates take the words of a live job's race: "
            f"{CANDIDATE_HELP.removeprefix('a candidate is ')}. Here lr*F and FIELD=VALUE "
            f"change the base optimizer (--base, SGD) at the surface's lr for it; "
            f"optimizer=CLASS starts from CLASS's own defaults at the surface's lr for it; "
            f"the base itself runs first, as '{BASE}'.",
            f"With no candidates: {defaults}.",
        ),
        epilog="examples:\n"
        "  optitui race --surface rosenbrock\n"
        "  optitui race --surface saddle momentum=0.5 momentum=0.9 lr*3\n"
        "  optitui race --surface beale --base Adam betas=0.9,0.9 betas=0.5,0.999\n"
        "  optitui race --surface rastrigin optimizer=Adam,lr=0.05 --steps 1000 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    race.add_argument("candidates", nargs="*", metavar="CANDIDATE", help=CANDIDATE_HELP)
    race.add_argument("--surface", required=True, choices=list(SURFACES), help="the function")
    race.add_argument(
        "--steps", type=positive_int, help="steps per candidate (each surface has its own)"
    )
    race.add_argument("--start", type=point, metavar="X,Y", help="start point (per surface)")
    race.add_argument(
        "--base",
        default="SGD",
        choices=SWAPPABLE,
        metavar="CLASS",
        help="the optimizer lr*F and FIELD=VALUE change (SGD)",
    )
    race.add_argument(
        "--json", action="store_true", help="print the paths as JSON instead of showing them"
    )


def _wrap(*paragraphs: str) -> str:
    return "\n\n".join(textwrap.fill(p, 79) for p in paragraphs)


def point(text: str) -> tuple[float, float]:
    """``X,Y``: two finite numbers."""
    parts = text.split(",")
    try:
        x, y = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (two numbers), got {text!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise argparse.ArgumentTypeError(f"expected two finite numbers, got {text!r}")
    return x, y


def main(args: argparse.Namespace) -> int:
    from optitui.store.candidates import parse_candidate, parse_candidates

    surface = SURFACES[args.surface]
    steps = args.steps or surface.steps
    if steps > MAX_STEPS:
        err(f"--steps: at most {MAX_STEPS}, got {steps}")
        return 2
    try:
        if args.candidates:
            named = [(c.text, c) for c in parse_candidates(args.candidates)]
            entries = [(BASE, parse_candidate("lr*1")), *named]
        else:
            entries = [(name, parse_candidate(text)) for name, text in DEFAULT_SET]
    except ValueError as exc:  # CommandError: one bad candidate refuses the race
        err(str(exc))
        return 2
    from optitui.trainer.control.surface_race import SurfaceRaceError, prepare

    try:
        ready = prepare(surface, entries, start=args.start, base=args.base)
    except SurfaceRaceError as exc:
        err(str(exc))
        return 2
    if args.json:
        print(json.dumps(ready.run(steps).to_json(), allow_nan=False))
        return 0
    if not has_terminal():
        err("no terminal to draw the race on; add --json to print its paths")
        return 2
    print(f"racing {len(entries)} candidates on {surface.name} for {steps} steps", file=sys.stderr)
    result = ready.run(steps)
    from optitui.tui.race_app import build_race_app

    app = build_race_app(result)
    app.run()
    return app.return_code or 0
