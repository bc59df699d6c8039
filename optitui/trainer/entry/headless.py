"""``optitui run --headless``: train a script's Job with no viewer attached."""

from __future__ import annotations

import contextlib
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from optitui.console.progress import first_line, reporter_for
from optitui.store import leftovers
from optitui.store.layout import RunDirError, RunPaths, create_run_dir
from optitui.store.manifests import damaged
from optitui.trainer.core import checkpoint, dist, run_facts, snapshot_check
from optitui.trainer.core.device import DeviceError, resolve_device, select
from optitui.trainer.core.job import JobError
from optitui.trainer.entry.options import RunOptions as RunOptions
from optitui.trainer.entry.script import ScriptError, load_job
from optitui.trainer.entry.script_mode import defines_setup, run_script_mode
from optitui.trainer.loop.steering import Steering
from optitui.trainer.loop.trainer import Trainer, seed_everything


class SetupFailed(Exception):
    """The job could not start; the message is for the user, no traceback needed."""


def prepare(opts: RunOptions) -> Trainer:
    """Resolve the device, load the script's Job and create its run store.

    Under torchrun each rank joins the process group, gets its own device, and
    uses the run directory rank 0 chose; rank 0 alone writes the store."""
    if not defines_setup(opts.script):  # importing it would run its training right here
        raise SetupFailed(
            f"{opts.script}: defines no setup(device); a script without one runs as it is "
            "with `optitui run SCRIPT` (not with --inline or lr-find)"
        )
    spec = opts.device
    try:
        if dist.launched_by_torchrun():
            spec = dist.rank_device(opts.device, *dist.local_ranks())
        device = resolve_device(spec)
    except DeviceError as exc:
        raise SetupFailed(str(exc)) from None
    select(device)  # before the process group and setup(): NCCL and the script use it
    info = dist.init_from_env(device, opts.dist_timeout)
    if opts.seed is not None:
        seed_everything(opts.seed)  # before setup: model init is seeded too
    sys.argv = [str(opts.script), *opts.script_args]  # as `python SCRIPT ARGS` would see it
    try:
        job = load_job(opts.script, device)
    except ScriptError as exc:
        raise SetupFailed(str(exc)) from exc
    if opts.on_divergence is not None:
        job.on_divergence = opts.on_divergence
        try:
            job.validate()
        except ValueError as exc:
            raise SetupFailed(f"--on-divergence: {exc}") from None
    if opts.sync_every is not None:
        job.sync_every = opts.sync_every
    if opts.health_every is not None:
        job.health_every = opts.health_every
    resume = None if opts.resume is None else _load_resume(opts.resume)
    if resume is not None:  # checked against the Job before any run directory exists
        target = snapshot_check.Target(job.model, job.optimizer, job.scheduler, job.train_data)
        try:
            snapshot_check.check(resume[0], target)
        except checkpoint.CheckpointError as exc:
            raise SetupFailed(f"--resume {opts.resume}: {exc}") from None
    paths = _run_dir(opts, info, device)
    meta = {
        "script": str(opts.script.resolve()),
        "argv": list(opts.argv),
        **run_facts.script_facts(opts.script, list(opts.script_args)),
        "mode": opts.mode,
        "seed": opts.seed if opts.seed is not None else job.seed,
        "world_size": 1 if info is None else info.world,
        "sync_every": None if info is None else job.sync_every,
    }
    if resume is not None:
        meta["resumed_from"] = str(resume[1])
    try:  # the job's lock on its run directory is taken here
        trainer = Trainer(job, device, paths, meta=meta, max_steps=opts.max_steps, dist_info=info)
    except RunDirError as exc:
        raise SetupFailed(str(exc)) from None
    if resume is not None:
        trainer.resume_from = resume
    return trainer


def _run_dir(opts: RunOptions, info: dist.DistInfo | None, device: torch.device) -> RunPaths:
    """Make the run directory; under torchrun rank 0 makes it and every rank learns it
    (or rank 0's reason for not making it)."""
    if info is None:
        try:
            return create_run_dir(opts.root, opts.script.stem, opts.run_dir)
        except RunDirError as exc:
            raise SetupFailed(str(exc)) from None
    made: tuple[str, str] | None = None
    if info.leader:
        try:
            made = ("dir", str(create_run_dir(opts.root, opts.script.stem, opts.run_dir).root))
        except RunDirError as exc:
            made = ("error", str(exc))
    kind, value = dist.broadcast_object(made, device)
    if kind != "dir":
        raise SetupFailed(value if info.leader else f"rank 0: {value}")
    return RunPaths(Path(value))


def _load_resume(ref: Path) -> tuple[dict[str, Any], str]:
    """A checkpoint file with its manifest, or a run directory (its newest checkpoint).
    What the source run's job left when it died is cleaned up (its own files only)."""
    with contextlib.suppress(OSError):  # (a ref that cannot be read is said below)
        source = ref if ref.is_dir() else ref.parent.parent
        gone = leftovers.clean(RunPaths(source)) if (source / "checkpoints").is_dir() else []
        if gone:
            print(f"optitui: removed what {source}'s job left: {', '.join(gone)}", file=sys.stderr)
    try:
        if ref.is_dir():
            folder = ref / "checkpoints" if (ref / "checkpoints").is_dir() else ref
            m = checkpoint.find(folder, "latest")
            return checkpoint.load(folder / m.file, m), f"{ref}:{m.id}"
        if not ref.exists():
            raise checkpoint.CheckpointError("no such file or directory")
        manifest = next((m for m in checkpoint.listing(ref.parent) if m.file == ref.name), None)
        if manifest is None:
            broken = [why for m, why in damaged(ref.parent) if m.file == ref.name]
            raise checkpoint.CheckpointError(
                f"damaged: {broken[0]}"
                if broken
                else f"no manifest ({ref.stem}.json) beside it; optitui loads only complete "
                "checkpoints, listed by their manifest"
            )
        return checkpoint.load(ref, manifest), str(ref)
    except checkpoint.CheckpointError as exc:
        raise SetupFailed(f"--resume {ref}: {exc}") from None
    except OSError as exc:
        raise SetupFailed(f"--resume {ref}: cannot read: {exc.strerror or exc}") from None


def install_signal_handlers(trainer: Trainer) -> None:
    """Ctrl+C or SIGTERM: finish the step, flush, exit. A second Ctrl+C interrupts at once.

    SIGHUP is ignored: a job never depends on the terminal that started it.
    """
    interrupts = 0

    def on_int(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        trainer.request_stop("interrupted" if signum == signal.SIGINT else "terminated")

    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGTERM, on_int)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def run_headless(opts: RunOptions) -> int:
    # A script without setup() (its own loop with optitui.watch, or none): run it as it is.
    if not defines_setup(opts.script):
        return run_script_mode(opts)
    try:
        return _run_headless(opts)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            with contextlib.suppress(Exception):  # leave together: an early exit aborts a peer
                torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def _run_headless(opts: RunOptions) -> int:
    try:
        trainer = prepare(opts)
    except SetupFailed as exc:
        print(f"optitui: {exc}", file=sys.stderr)
        return 2
    who = "" if trainer.dist is None else f"rank {trainer.dist.rank}/{trainer.dist.world} "
    print(
        first_line(f"{who}training on {trainer.device}", trainer.paths.root, opts.no_terminal),
        file=sys.stderr,
        flush=True,
    )
    install_signal_handlers(trainer)
    reporter = (
        reporter_for(trainer.paths.root, opts.log_every, opts.quiet) if trainer.leader else None
    )
    # the reporter prints the run's warnings; under the dashboard they are its events
    Steering.echo_warnings = reporter is None and not opts.events_shown
    error: BaseException | None = None
    try:
        state = trainer.run()
    except BaseException as exc:
        error = exc
    finally:
        Steering.echo_warnings = True
        if reporter is not None:  # the events up to the end, before the last line
            reporter.stop()
    if isinstance(error, KeyboardInterrupt):
        print("optitui: interrupted", file=sys.stderr)
        return 130
    if isinstance(error, JobError):  # the Job cannot train at all (no batches): not a crash
        print(f"optitui: the Job from setup(device) is not usable: {error}", file=sys.stderr)
        return 2
    if isinstance(error, Exception):
        traceback.print_exception(error)
        print(
            f"optitui: the run failed at step {trainer.step}: {type(error).__name__}: {error}",
            file=sys.stderr,
        )
        print(f"optitui: traceback stored in {trainer.paths.db}", file=sys.stderr)
        return 1
    if error is not None:
        raise error
    print(
        f"optitui: {state} at step {trainer.step}; run directory {trainer.paths.root}",
        file=sys.stderr,
    )
    return 0
