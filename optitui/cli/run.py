"""``optitui run``: start a script's job, with the dashboard, inline, headless or under torchrun."""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from optitui.cli.common import count_int, err, has_terminal, positive_int, seconds, whole_int

RUN_DESCRIPTION = """\
Train SCRIPT with the dashboard (or --headless, --inline).

A script that defines setup(device) returning an optitui.Job is trained by
optitui's loop. A script without setup() runs as it is, as __main__: its own
optitui.watch(...) serves the dashboard, or, without one, zero-code mode finds
its optimizer, loss and scheduler by itself.

The script's own arguments go after `--`:
  optitui run train.py --max-steps 500 -- --epochs 3 --batch-size 64
"""


def add_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="train a script's Job (setup(device) -> optitui.Job), or run a script as it is",
        usage="optitui run [OPTIONS] SCRIPT [-- ARGS ...]",
        description=RUN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "script",
        type=Path,
        help="a Python file: with setup(device), or a training script run as it is",
    )
    run.add_argument(
        "--headless",
        action="store_true",
        help="no viewer (for nohup, sbatch); the default when there is no terminal",
    )
    run.add_argument(
        "--log-every",
        type=seconds,
        metavar="SECONDS",
        help="headless: a progress line every SECONDS in a log (30; 0: none); "
        "on a terminal a status line that rewrites itself (0: none)",
    )
    run.add_argument(
        "--quiet", action="store_true", help="headless: print only the first and the last line"
    )
    # the dashboard's job: the viewer shows the run's warnings, which its output.log
    # would show a second time
    run.add_argument("--events-shown", action="store_true", help=argparse.SUPPRESS)
    run.add_argument(
        "--no-bell",
        action="store_true",
        help="with the dashboard: no terminal bell when the run pauses itself, fails or ends",
    )
    run.add_argument(
        "--pin",
        metavar="METRIC",
        help="with the dashboard: draw this metric (acc, val_acc, ...) under the loss plot",
    )
    run.add_argument(
        "--inline",
        action="store_true",
        help="train inside the dashboard's process (training ends when it closes)",
    )
    run.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    run.add_argument("--root", type=Path, default=Path("runs"), help="where runs go (./runs)")
    run.add_argument("--run-dir", type=Path, help="use exactly this run directory")
    run.add_argument("--max-steps", type=positive_int, help="stop after N optimizer steps")
    run.add_argument("--seed", type=whole_int, help="seed python, numpy and torch before setup()")
    run.add_argument(
        "--resume",
        type=Path,
        metavar="CHECKPOINT",
        help="start from a checkpoint file (or a run directory: its newest checkpoint)",
    )
    run.add_argument(
        "--nproc-per-node",
        type=positive_int,
        metavar="N",
        help="train on N processes through torchrun (torch.distributed.run --standalone)",
    )
    run.add_argument(
        "--sync-every",
        type=positive_int,
        metavar="K",
        help="under torchrun: steps between the ranks' exchanges of commands and losses (16)",
    )
    run.add_argument(
        "--health-every",
        type=count_int,
        metavar="N",
        help="steps between measurements of each param group's gradient norm, parameter "
        "norm and update ratio (16; 0: off)",
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
        ("--health-every", args.health_every),
        ("--dist-timeout", args.dist_timeout),
        ("--log-every", args.log_every),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if args.quiet:
        argv.append("--quiet")
    return argv + (["--", *args.script_args] if args.script_args else [])


def script_problem(script: Path) -> str | None:
    """Why ``script`` cannot be run (missing, not a file, not Python that parses), or None.

    Checked before anything is created: a run directory is only made for a script
    that could start."""
    if not script.exists():
        return f"no such script: {script}"
    if not script.is_file():
        return f"{script} is not a file; give the training script's path"
    try:
        source = script.read_bytes()
    except OSError as exc:
        return f"cannot read {script}: {exc.strerror or exc}"
    try:
        ast.parse(source, filename=str(script))
    except SyntaxError as exc:
        where = f"line {exc.lineno}" if exc.lineno else "somewhere"
        return f"{script} does not parse ({where}): {exc.msg}"
    except ValueError as exc:  # null bytes
        return f"{script} is not a Python source file: {exc}"
    return None


def one_gpu_for_ranks(device: str, nproc: int | None) -> str | None:
    """Why ``--device cuda:N`` cannot go with several ranks (each rank trains on its own
    GPU, cuda:LOCAL_RANK), or None."""
    if not nproc or nproc < 2 or not device.strip().lower().startswith("cuda:"):
        return None
    return (
        f"--device {device} with --nproc-per-node {nproc}: every rank would train on that "
        "one GPU. Each rank uses its own (cuda:LOCAL_RANK) with --device cuda or auto; "
        "choose which GPUs with CUDA_VISIBLE_DEVICES"
    )


def main(args: argparse.Namespace) -> int:
    problem = script_problem(Path(args.script))
    if problem is not None:
        err(problem)
        return 2
    shared = one_gpu_for_ranks(args.device, args.nproc_per_node)
    if shared is not None:
        err(shared)
        return 2
    # the dashboard needs a terminal: without one (nohup, sbatch, CI) train headless
    args.no_terminal = not args.headless and not has_terminal()
    if args.no_terminal:
        args.headless, args.inline = True, False
    if args.nproc_per_node and args.headless and "LOCAL_RANK" not in os.environ:
        from optitui.store.layout import new_run_path

        args.run_dir = args.run_dir or new_run_path(args.root, Path(args.script).stem)
        if args.no_terminal:
            from optitui.console.progress import first_line

            what = f"{args.nproc_per_node} processes through torchrun"
            print(first_line(what, args.run_dir, True), file=sys.stderr, flush=True)
        return subprocess.call(torchrun_argv(args))
    if args.nproc_per_node and args.inline:
        err("--inline runs in this process; it cannot be combined with --nproc-per-node")
        return 2
    if not args.headless:
        if args.inline:
            return _run_inline(args)
        return _run_with_dashboard(args)
    from optitui.trainer.entry.headless import run_headless

    return run_headless(_run_options(args, "headless"))


def _run_options(args: argparse.Namespace, mode: str) -> Any:
    """The `run` command's options for the job, whichever way it runs."""
    from optitui.trainer.entry.headless import RunOptions

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
        health_every=args.health_every,
        dist_timeout=args.dist_timeout,
        mode=mode,
        log_every=args.log_every,
        quiet=args.quiet,
        events_shown=args.events_shown,
        no_terminal=getattr(args, "no_terminal", False),
    )


def _run_with_dashboard(args: argparse.Namespace) -> int:
    """The job in its own session (it outlives the terminal), the dashboard attached."""
    from optitui.launch import JobOptions, LaunchError, start_job
    from optitui.store.layout import RunDirError

    device = args.device
    if device == "auto" and not args.nproc_per_node:  # under torchrun: a GPU per rank
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
        health_every=args.health_every,
    )
    print(f"optitui: starting {args.script} …", file=sys.stderr, flush=True)

    def waiting(elapsed: float) -> None:
        if int(elapsed) % 5 == 0:
            print(f"optitui: still starting ({elapsed:.0f} s)", file=sys.stderr, flush=True)

    try:
        job = start_job(opts, progress=waiting)
    except (LaunchError, RunDirError) as exc:
        err(str(exc))
        return 2
    except KeyboardInterrupt:
        err("interrupted before training started")
        return 130
    from optitui.tui.app import build_app
    from optitui.tui.settings import ViewerSettings

    app = build_app(
        job.paths.root,
        process=job.process,
        settings=ViewerSettings(bell=not args.no_bell, pinned=args.pin),
    )
    app.run()
    if app.quit_choice != "stop" and job.process.poll() is None:
        print(f"optitui: detached; the job trains on. `optitui attach {job.paths.root}`")
        return app.return_code or 0
    if app.quit_choice == "stop" and job.process.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            job.process.wait(timeout=5)  # it answered the stop; let it write its end
    line, status = how_it_ended(job.paths.root)
    print(f"optitui: {line}")
    return app.return_code or status


def how_it_ended(run_dir: Path) -> tuple[str, int]:
    """One line for the terminal once the dashboard closed on a run that is over, and the
    exit status it makes: 1 when training failed or the job died (as a headless run's),
    or its store cannot be read; else 0."""
    from optitui.store.reader import open_reader

    try:
        with open_reader(run_dir) as reader:
            st = reader.status()
    except (FileNotFoundError, OSError, sqlite3.Error) as exc:
        return f"the run store cannot be read ({exc}); run dir {run_dir}", 1
    words = {"stopped": "stopped", "finished": "finished", "failed": "failed", "crashed": "died"}
    what = words.get(st.state, "stopping" if st.alive else st.state)
    bad = st.state in ("failed", "crashed")
    why = f" ({st.message})" if st.message and bad else ""
    return f"training {what} at step {st.step:,}{why}; run dir {run_dir}", 1 if bad else 0


def _pick_device() -> str | None:
    """ "auto", or the device picked among several accelerators (None: cancelled)."""
    from optitui.tui.devices import accelerators

    found = accelerators()
    if found.note:
        print(f"optitui: {found.note}", file=sys.stderr)
    devices = found.devices
    if len(devices) < 2:
        return "auto"
    from optitui.tui.screens.device_picker import DevicePickerApp

    return DevicePickerApp(devices).run()


def _run_inline(args: argparse.Namespace) -> int:
    """The training loop in a thread of the dashboard's process: it ends with the app."""
    from optitui.trainer.entry.headless import SetupFailed, prepare

    try:
        trainer = prepare(_run_options(args, "inline"))
    except SetupFailed as exc:
        err(str(exc))
        return 2
    from optitui.tui.app import build_app
    from optitui.tui.settings import ViewerSettings

    app = build_app(
        trainer.paths.root,
        job_runner=trainer.run,
        stopper=trainer.request_stop,
        settings=ViewerSettings(bell=not args.no_bell, pinned=args.pin),
    )
    app.run()
    line, status = how_it_ended(trainer.paths.root)
    print(f"optitui: {line}")
    return app.return_code or status
