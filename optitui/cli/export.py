"""``optitui export``: runs' per-step metrics as CSV or JSON lines, in one table."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from optitui.cli.common import STORE_ERRORS, RunUnreadable, err, open_run


def add_parser(sub: Any) -> None:
    ex = sub.add_parser(
        "export",
        help="write runs' per-step metrics as CSV or JSON lines, one table",
        description="One row per recorded step of each run, the runs one after the other: "
        "run (the run's name), branch (one more after each restore), step, epoch, time, "
        "loss, [grad_norm,] [skipped,] lr/<group>..., [grad_norm/<group>, "
        "param_norm/<group>, update_ratio/<group>...,] your own metrics under their "
        "names, val_loss. The columns are every run's together, empty where a run has "
        'none (NaN too; +-inf is inf in CSV, "Infinity" in JSON lines). Every run is '
        "checked before anything is written.",
    )
    ex.add_argument(
        "runs", nargs="+", metavar="RUN", help="run directory (or its name under --root)"
    )
    ex.add_argument(
        "--system",
        action="store_true",
        help="write the machine's series instead: one row per sample of each rank (rank, "
        "time, step, cpu_percent, rss_bytes, host_mem_*, gpu<N>/util_percent, mem_*, "
        "temp_c, power_w)",
    )
    ex.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    ex.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    ex.add_argument("--root", type=Path, default=Path("runs"), help="where runs are (./runs)")


def labels(names: list[str], paths: list[Path]) -> list[str]:
    """What the ``run`` column says for each run: its directory's name, or the name as
    given where two runs' directories share a name."""
    short = [p.name for p in paths]
    return [s if short.count(s) == 1 else n for s, n in zip(short, names, strict=True)]


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file behind stdout (a test's)
        pass


def main(args: argparse.Namespace) -> int:
    from optitui.store import export

    def write(out: Any) -> int:
        if args.system:
            return export.write_system_runs(runs, out, args.format)
        return export.write_runs(runs, out, args.format)

    with ExitStack() as stack:
        try:
            readers = [
                stack.enter_context(open_run(name, args.root, "export")) for name in args.runs
            ]
            seen: dict[Path, str] = {}
            for name, reader in zip(args.runs, readers, strict=True):
                where = reader.paths.root.resolve()
                if where in seen:
                    raise RunUnreadable(
                        f"{name}: the same run as {seen[where]}; name each run once"
                    )
                seen[where] = name
            named = labels(args.runs, [r.paths.root for r in readers])
            runs: list[tuple[str | None, Any]] = list(zip(named, readers, strict=True))
            if args.output is None:
                try:
                    write(sys.stdout)
                except BrokenPipeError:  # `| head` read what it wanted: not an error
                    quiet_stdout()
            else:
                try:
                    f = stack.enter_context(open(args.output, "w", newline=""))
                except OSError as exc:
                    raise RunUnreadable(
                        f"{args.output}: cannot write: {exc.strerror or exc}"
                    ) from None
                n = write(f)
                f.close()
                print(f"{n} rows written to {args.output}", file=sys.stderr)
        except RunUnreadable as exc:
            err(str(exc))
            return 2
        except STORE_ERRORS as exc:  # a store damaged past its first reads, or the output
            err(f"export: {exc}")
            return 2
    return 0
