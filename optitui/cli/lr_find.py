"""``optitui lr-find``: an LR range test on a script's job before training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from optitui.cli.common import err, whole_int


def add_parser(sub: Any) -> None:
    lf = sub.add_parser(
        "lr-find",
        help="LR range test on a script's Job before training (prints a plot and suggestions)",
    )
    lf.add_argument("script", type=Path, help="a Python file defining setup(device)")
    lf.add_argument("sweep", nargs="*", help="start_lr=1e-7 end_lr=10 num_iter=100 mode=exp ...")
    lf.add_argument("--group", help="sweep one param group; the others keep their lr")
    lf.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    lf.add_argument("--seed", type=whole_int, help="seed python, numpy and torch before setup()")
    lf.add_argument("--json", action="store_true", help="print the curve and suggestions as JSON")


def main(args: argparse.Namespace) -> int:
    from optitui.store.words import parse_send

    try:
        _, sweep = parse_send("lr-find", args.sweep, args.group)
        from optitui.store.commands import validate

        sweep = validate("lr-find", sweep)
    except ValueError as exc:
        err(str(exc))
        return 2
    from optitui.lrfind_report import report, run_before_training, to_json
    from optitui.trainer.control.rangetest import RangeTestError
    from optitui.trainer.entry.headless import SetupFailed

    try:
        d = run_before_training(args.script, args.device, sweep, args.seed)
    except (SetupFailed, RangeTestError) as exc:
        err(str(exc))
        return 2
    print(to_json(d) if args.json else report(d, color=sys.stdout.isatty()))
    return 0 if d["status"] == "done" else 1
