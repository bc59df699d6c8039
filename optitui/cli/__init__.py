"""The ``optitui`` command line. Imports no torch until a job is started.

Each verb lives in a module of its own with ``add_parser(sub)`` and ``main(args)``;
:data:`VERBS` lists them in the order ``--help`` shows them.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from types import ModuleType

from optitui.cli import attach, diff, export, lr_find, ls, race, run, send, serve_stdio, status
from optitui.cli.common import err, one_line
from optitui.cli.run import torchrun_argv
from optitui.store.layout import RunDirError
from optitui.version import __version__

__all__ = ["VERBS", "build_parser", "main", "torchrun_argv"]

DESCRIPTION = """\
Watch and steer PyTorch training from the terminal.

  optitui run train.py                   train a script's setup(device) Job, with the dashboard
  optitui run train.py --headless        the same without a viewer, progress in the log
                                         (nohup, sbatch; the default with no terminal)
  optitui attach [RUN_DIR]               open the dashboard on a running job (default: newest)
  optitui attach gpu1:runs/big           the same for a run on another host, over your ssh
  optitui ls [--json]                    runs under ./runs, newest first: state, step, loss, trend
  optitui status RUN [--json]            one run summed up: state, ETA, loss trend, groups
  optitui send RUN set lr=3e-4 --group 1 change a hyperparameter at the next step
  optitui send RUN pause | resume | step 10 | stop | scale-lr 0.5
  optitui export RUN... --format csv     per-step metrics of runs for pandas, in one table
  optitui race --surface rosenbrock      optimizers racing on a test function (no data, no model)
  optitui diff RUN_A RUN_B [--json]      what differs: script, optimizer, groups, scheduler,
                                         job settings, and the commands each run received
"""

#: verb -> its module (``add_parser(sub)`` and ``main(args)``)
VERBS: dict[str, ModuleType] = {
    "run": run,
    "attach": attach,
    "ls": ls,
    "status": status,
    "send": send,
    "lr-find": lr_find,
    "export": export,
    "race": race,
    "diff": diff,
    "serve-stdio": serve_stdio,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="optitui",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"optitui {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    for module in VERBS.values():
        module.add_parser(sub)
    return p


def _verb_parser(parser: argparse.ArgumentParser, cmd: str | None) -> argparse.ArgumentParser:
    """The sub-parser of ``cmd`` (its usage line is the one to show), else ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and cmd in action.choices:
            found: argparse.ArgumentParser = action.choices[cmd]
            return found
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # `optitui run train.py --headless -- --epochs 3`: what follows `--` is the script's
    extra = words[words.index("--") + 1 :] if "--" in words else []
    words = words[: words.index("--")] if "--" in words else words
    args, unknown = parser.parse_known_args(words)
    if unknown:
        verb = _verb_parser(parser, args.cmd)
        message = f"unrecognized arguments: {' '.join(unknown)}"
        if args.cmd == "run":
            script = getattr(args, "script", None) or "train.py"
            message += (
                "; the script's own arguments go after `--`: "
                f"optitui run {script} -- {' '.join(unknown)}"
            )
        verb.error(message)
    args.script_args = tuple(extra)
    if extra and args.cmd != "run":
        parser.error("arguments after -- are passed to the script of `optitui run` only")
    if args.cmd is None:
        parser.print_help()
        return 2
    try:
        return int(VERBS[args.cmd].main(args))
    except BrokenPipeError:  # `optitui export RUN | head`
        sys.stderr.close()
        return 0
    except ENVIRONMENT as exc:
        # what the files, folders and stores around a verb can raise (gone, closed to
        # this user, damaged, a full or read-only disk): one line and exit 2, never a
        # traceback. Mistakes in optitui itself still show theirs.
        err(f"{args.cmd}: {one_line(exc)}")
        return 2


#: errors that come from the environment rather than from optitui's own code
ENVIRONMENT: tuple[type[BaseException], ...] = (OSError, sqlite3.Error, RunDirError)
