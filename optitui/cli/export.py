"""``optitui export``: a run's per-step metrics as CSV or JSON lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from optitui.cli.common import err


def add_parser(sub: Any) -> None:
    ex = sub.add_parser("export", help="write a run's per-step metrics as CSV or JSON lines")
    ex.add_argument("run", help="run directory (or its name under --root)")
    ex.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    ex.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    ex.add_argument("--root", type=Path, default=Path("runs"))


def main(args: argparse.Namespace) -> int:
    from optitui.store import export
    from optitui.store.client import resolve_run
    from optitui.store.reader import open_reader

    try:
        paths = resolve_run(args.run, args.root)
        with open_reader(paths.root) as reader:
            if args.output is None:
                export.write(reader, sys.stdout, args.format)
            else:
                with open(args.output, "w", newline="") as f:
                    n = export.write(reader, f, args.format)
                print(f"{n} rows written to {args.output}", file=sys.stderr)
    except FileNotFoundError as exc:
        err(str(exc))
        return 2
    return 0
