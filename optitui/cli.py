"""The ``optitui`` command line. Imports no torch until a job is started."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from optitui import __version__
from optitui.store.words import USAGE

DESCRIPTION = """\
Watch and steer PyTorch training from the terminal.

  optitui run train.py                   train a script's setup(device) Job, with the dashboard
  optitui run train.py --headless        the same without a viewer (nohup, sbatch)
  optitui attach [RUN_DIR]               open the dashboard on a running job (default: newest)
  optitui ls                             runs under ./runs with state, step, loss
  optitui send RUN set lr=3e-4 --group 1 change a hyperparameter at the next step
  optitui send RUN pause | resume | step 10 | stop | scale-lr 0.5
  optitui export RUN --format csv        per-step metrics for pandas
"""


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {v}")
    return v


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="optitui",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"optitui {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    run = sub.add_parser("run", help="train a script's Job (setup(device) -> optitui.Job)")
    run.add_argument("script", type=Path, help="a Python file defining setup(device)")
    run.add_argument("--headless", action="store_true", help="no viewer (for nohup, sbatch)")
    run.add_argument(
        "--inline",
        action="store_true",
        help="train inside the dashboard's process (training ends when it closes)",
    )
    run.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    run.add_argument("--root", type=Path, default=Path("runs"), help="where runs go (./runs)")
    run.add_argument("--run-dir", type=Path, help="use exactly this run directory")
    run.add_argument("--max-steps", type=_positive_int, help="stop after N optimizer steps")
    run.add_argument("--seed", type=_int, help="seed python, numpy and torch before setup()")
    run.add_argument(
        "--resume",
        type=Path,
        metavar="CHECKPOINT",
        help="start from a checkpoint file (or a run directory: its newest checkpoint)",
    )
    run.add_argument(
        "--nproc-per-node",
        type=_positive_int,
        metavar="N",
        help="train on N processes through torchrun (torch.distributed.run --standalone)",
    )
    run.add_argument(
        "--sync-every",
        type=_positive_int,
        metavar="K",
        help="under torchrun: steps between the ranks' exchanges of commands and losses (16)",
    )
    run.add_argument(
        "--dist-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="under torchrun: how long a rank waits for a silent peer before failing (120)",
    )
    run.add_argument(
        "--on-divergence",
        choices=("pause", "rollback", "ignore"),
        help="on a NaN/inf loss: pause (default), roll back to the last good state, or ignore",
    )

    att = sub.add_parser(
        "attach",
        help="open the dashboard on a run (default: the newest running one under --root)",
        description="Shows the run's whole history, then live updates; q detaches or stops. "
        "Several dashboards may attach to one run.",
    )
    att.add_argument("run", nargs="?", help="run directory (or its name under --root)")
    att.add_argument("--root", type=Path, default=Path("runs"), help="where runs are (./runs)")

    ls = sub.add_parser("ls", help="list runs with state, step, last loss and age")
    ls.add_argument("--root", type=Path, default=Path("runs"))

    send = sub.add_parser(
        "send",
        help="send a command to a running job and wait for its answer",
        description="Commands:\n  "
        + "\n  ".join(USAGE.values())
        + "\n\nExit status: 0 applied, 1 rejected, 2 bad command, 3 no answer.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.add_argument("run", help="run directory (or its name under --root)")
    send.add_argument("command", help="set, scale-lr, pause, resume, step, stop, ... (below)")
    send.add_argument("args", nargs="*", help="FIELD=VALUE pairs for set; FACTOR; N")
    send.add_argument("--ramp", type=_positive_int, help="spread set/scale-lr over N steps")
    send.add_argument("--group", help="param group index or name (default: all groups)")
    send.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (10)")
    send.add_argument("--root", type=Path, default=Path("runs"))

    lf = sub.add_parser(
        "lr-find",
        help="LR range test on a script's Job before training (prints a plot and suggestions)",
    )
    lf.add_argument("script", type=Path, help="a Python file defining setup(device)")
    lf.add_argument("sweep", nargs="*", help="start_lr=1e-7 end_lr=10 num_iter=100 mode=exp ...")
    lf.add_argument("--group", help="sweep one param group; the others keep their lr")
    lf.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    lf.add_argument("--seed", type=_int, help="seed python, numpy and torch before setup()")
    lf.add_argument("--json", action="store_true", help="print the curve and suggestions as JSON")

    ex = sub.add_parser("export", help="write a run's per-step metrics as CSV or JSON lines")
    ex.add_argument("run", help="run directory (or its name under --root)")
    ex.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    ex.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    ex.add_argument("--root", type=Path, default=Path("runs"))
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # `optitui run train.py --headless -- --epochs 3`: what follows `--` is the script's
    extra = words[words.index("--") + 1 :] if "--" in words else []
    words = words[: words.index("--")] if "--" in words else words
    args = parser.parse_args(words)
    args.script_args = tuple(extra)
    if extra and args.cmd != "run":
        parser.error("arguments after -- are passed to the script of `optitui run` only")
    if args.cmd is None:
        parser.print_help()
        return 2
    handler = {
        "run": cmd_run,
        "attach": cmd_attach,
        "ls": cmd_ls,
        "send": cmd_send,
        "export": cmd_export,
        "lr-find": cmd_lr_find,
    }[args.cmd]
    try:
        return handler(args)
    except BrokenPipeError:  # `optitui export RUN | head`
        sys.stderr.close()
        return 0


def _err(msg: str) -> None:
    print(f"optitui: {msg}", file=sys.stderr)


# -- run -------------------------------------------------------------------------
def torchrun_argv(args: argparse.Namespace) -> list[str]:
    """``optitui run ... --headless`` under torchrun, on this machine's N processes.

    The run directory is chosen here, so that every rank knows it before any of
    them runs (a script without setup() starts its process group itself, later)."""
    from optitui.store.layout import new_run_path

    run_dir = args.run_dir or new_run_path(args.root, Path(args.script).stem)
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={args.nproc_per_node}",
        "-m",
        "optitui",
        "run",
        str(args.script),
        "--headless",
        "--device",
        args.device,
        "--root",
        str(args.root),
    ]
    for flag, value in (
        ("--run-dir", run_dir),
        ("--max-steps", args.max_steps),
        ("--seed", args.seed),
        ("--resume", args.resume),
        ("--on-divergence", args.on_divergence),
        ("--sync-every", args.sync_every),
        ("--dist-timeout", args.dist_timeout),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv + (["--", *args.script_args] if args.script_args else [])


def cmd_run(args: argparse.Namespace) -> int:
    if args.nproc_per_node and args.headless and "LOCAL_RANK" not in os.environ:
        import subprocess

        return subprocess.call(torchrun_argv(args))
    if args.nproc_per_node and args.inline:
        _err("--inline runs in this process; it cannot be combined with --nproc-per-node")
        return 2
    if not args.headless:
        if args.inline:
            return _run_inline(args)
        return _run_with_dashboard(args)
    from optitui.trainer.headless import run_headless

    return run_headless(_run_options(args, "headless"))


def _run_options(args: argparse.Namespace, mode: str) -> Any:
    """The `run` command's options for the job, whichever way it runs."""
    from optitui.trainer.headless import RunOptions

    return RunOptions(
        script=args.script,
        device=args.device,
        root=args.root,
        run_dir=args.run_dir,
        max_steps=args.max_steps,
        seed=args.seed,
        argv=tuple(sys.argv),
        script_args=args.script_args,
        resume=args.resume,
        on_divergence=args.on_divergence,
        sync_every=args.sync_every,
        dist_timeout=args.dist_timeout,
        mode=mode,
    )


def _run_with_dashboard(args: argparse.Namespace) -> int:
    """The job in its own session (it outlives the terminal), the dashboard attached."""
    from optitui.launch import JobOptions, LaunchError, start_job

    device = args.device
    if device == "auto":
        picked = _pick_device()
        if picked is None:
            return 1
        device = picked
    opts = JobOptions(
        args.script,
        device,
        args.root,
        args.run_dir,
        args.max_steps,
        args.seed,
        args.resume,
        args.on_divergence,
        args.nproc_per_node,
        args.sync_every,
        args.script_args,
    )
    print(f"optitui: starting {args.script} …", file=sys.stderr, flush=True)

    def waiting(elapsed: float) -> None:
        if int(elapsed) % 5 == 0:
            print(f"optitui: still starting ({elapsed:.0f} s)", file=sys.stderr, flush=True)

    try:
        job = start_job(opts, progress=waiting)
    except (LaunchError, FileExistsError) as exc:
        _err(str(exc))
        return 2
    except KeyboardInterrupt:
        _err("interrupted before training started")
        return 130
    from optitui.tui.app import build_app

    app = build_app(job.paths.root, process=job.process)
    app.run()
    if app.quit_choice != "stop" and job.process.poll() is None:
        print(f"optitui: detached; the job trains on. `optitui attach {job.paths.root}`")
    return app.return_code or 0


def _pick_device() -> str | None:
    """ "auto", or the device picked among several accelerators (None: cancelled)."""
    from optitui.tui.devices import accelerators

    devices = accelerators()
    if len(devices) < 2:
        return "auto"
    from optitui.tui.screens.device_picker import DevicePickerApp

    return DevicePickerApp(devices).run()


def _run_inline(args: argparse.Namespace) -> int:
    """The training loop in a thread of the dashboard's process: it ends with the app."""
    from optitui.trainer.headless import SetupFailed, prepare

    try:
        trainer = prepare(_run_options(args, "inline"))
    except (SetupFailed, FileExistsError) as exc:
        _err(str(exc))
        return 2
    from optitui.tui.app import build_app

    app = build_app(trainer.paths.root, job_runner=trainer.run, stopper=trainer.request_stop)
    app.run()
    return app.return_code or 0


# -- attach ----------------------------------------------------------------------
def cmd_attach(args: argparse.Namespace) -> int:
    from optitui.store.client import resolve_run
    from optitui.store.layout import latest_running_run
    from optitui.store.reader import open_reader

    try:
        if args.run is not None:
            paths = resolve_run(args.run, args.root)
        else:
            found = latest_running_run(args.root)
            if found is None:
                _err(f"no running job under {args.root}/; give a RUN_DIR (see `optitui ls`)")
                return 2
            paths = found
        with open_reader(paths.root) as reader:
            problem = reader.schema_problem()
    except FileNotFoundError as exc:
        _err(str(exc))
        return 2
    if problem:
        _err(problem)
        return 2
    from optitui.tui.feed import StoreFeed

    feed = StoreFeed(paths.root)
    feed.prefetch()  # a long history is read while Textual loads
    from optitui.tui.app import build_app

    app = build_app(paths.root, feed=feed)
    app.run()
    return app.return_code or 0


# -- ls --------------------------------------------------------------------------
def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def cmd_ls(args: argparse.Namespace) -> int:
    from optitui.store.layout import find_runs
    from optitui.store.reader import open_reader

    runs = find_runs(args.root)
    if not runs:
        print(f"no runs under {args.root}/")
        return 0
    now = time.time()
    table = [("RUN", "STATE", "STEP", "LOSS", "AGE", "SCRIPT")]
    for paths in runs:
        try:
            with open_reader(paths.root) as r:
                st = r.status()
                loss = r.last_loss()
                script = Path(str(r.meta().get("script", "?"))).name
                age = _age(now - (st.last_record or st.heartbeat))
                table.append(
                    (
                        paths.root.name,
                        st.state,
                        str(st.step),
                        "-" if loss is None else f"{loss:.4g}",
                        age,
                        script,
                    )
                )
        except Exception as exc:
            table.append((paths.root.name, "unreadable", "-", "-", "-", str(exc)[:40]))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


# -- send ------------------------------------------------------------------------
def cmd_send(args: argparse.Namespace) -> int:
    from optitui.store.client import NoAnswer, resolve_run, send
    from optitui.store.words import parse_send

    try:
        kind, cargs = parse_send(args.command, args.args, args.group, args.ramp)
        paths = resolve_run(args.run, args.root)
        sent = send(paths, kind, cargs, timeout=args.timeout)
    except (ValueError, FileNotFoundError) as exc:  # CommandError is a ValueError
        _err(str(exc))
        return 2 if not isinstance(exc, FileNotFoundError) else 3
    except NoAnswer as exc:
        _err(str(exc))
        return 3
    out = sent.outcome
    if out is None:
        print(f"sent {sent.id}")
        return 0
    if out.applied:
        print(f"applied after step {out.step}: {kind} ({sent.id})")
        if kind == "lr-find":
            return _follow_range_test(paths, sent.id)
        return 0
    print(f"rejected at step {out.step}: {out.reason}", file=sys.stderr)
    return 1


def _follow_range_test(paths: Any, test_id: str) -> int:
    """Wait for a range test sent to a live job, then print its curve and suggestions."""
    from optitui.lrfind_report import as_dict, report
    from optitui.store.reader import open_reader

    with open_reader(paths.root) as reader:
        while True:
            tests = reader.range_tests(test_id)
            if tests and tests[0].status != "running":
                print(report(as_dict(tests[0])))
                return 0 if tests[0].status == "done" else 1
            if not reader.status().alive:
                _err("the run ended before the range test finished")
                return 3
            time.sleep(0.2)


# -- lr-find -----------------------------------------------------------------------
def cmd_lr_find(args: argparse.Namespace) -> int:
    from optitui.store.words import parse_send

    try:
        _, sweep = parse_send("lr-find", args.sweep, args.group)
        from optitui.store.commands import validate

        sweep = validate("lr-find", sweep)
    except ValueError as exc:
        _err(str(exc))
        return 2
    from optitui.lrfind_report import report, run_before_training, to_json
    from optitui.trainer.headless import SetupFailed
    from optitui.trainer.rangetest import RangeTestError

    try:
        d = run_before_training(args.script, args.device, sweep, args.seed)
    except (SetupFailed, RangeTestError) as exc:
        _err(str(exc))
        return 2
    print(to_json(d) if args.json else report(d, color=sys.stdout.isatty()))
    return 0 if d["status"] == "done" else 1


# -- export ----------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
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
        _err(str(exc))
        return 2
    return 0
