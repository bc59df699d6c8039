"""Starting a job for ``optitui run SCRIPT``: its own process, session and run directory.

The job runs ``python -m optitui run --headless`` in a new session (so a lost
terminal or a closed SSH connection never reaches it), reads /dev/null, and
writes everything it prints to ``RUN_DIR/output.log``. The viewer then
attaches to the run store like any other viewer. Imports no torch.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from optitui.store.layout import RunDirError, RunPaths, create_run_dir


class LaunchError(Exception):
    """The job ended before its run store was ready; the message has its output's tail."""


@dataclass(frozen=True)
class JobOptions:
    """The ``optitui run`` options passed on to the job process."""

    script: Path
    device: str = "auto"
    root: Path = Path("runs")
    run_dir: Path | None = None
    max_steps: int | None = None
    seed: int | None = None
    resume: Path | None = None
    on_divergence: str | None = None
    nproc_per_node: int | None = None
    sync_every: int | None = None
    script_args: tuple[str, ...] = ()
    health_every: int | None = None


@dataclass
class Launched:
    paths: RunPaths
    process: subprocess.Popen[bytes]


def child_argv(opts: JobOptions, run_dir: Path) -> list[str]:
    """The job's command line: the same options, headless, in a chosen run directory."""
    argv = [sys.executable, "-m", "optitui", "run", str(opts.script), "--headless"]
    if opts.nproc_per_node:  # torchrun's own launcher; rank 0 writes the store
        argv[1:3] = [
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={opts.nproc_per_node}",
            "-m",
            "optitui",
        ]
    # the dashboard shows progress and events: its job's output.log keeps to the job's own
    argv += ["--run-dir", str(run_dir), "--device", opts.device, "--quiet", "--events-shown"]
    if opts.max_steps is not None:
        argv += ["--max-steps", str(opts.max_steps)]
    if opts.seed is not None:
        argv += ["--seed", str(opts.seed)]
    if opts.resume is not None:
        argv += ["--resume", str(opts.resume.resolve())]
    if opts.on_divergence is not None:
        argv += ["--on-divergence", opts.on_divergence]
    if opts.sync_every is not None:
        argv += ["--sync-every", str(opts.sync_every)]
    if opts.health_every is not None:
        argv += ["--health-every", str(opts.health_every)]
    if opts.script_args:
        argv += ["--", *opts.script_args]
    return argv


def tail(path: Path, lines: int = 20, max_bytes: int = 16384) -> str:
    """The last lines of a file (for error messages); empty when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def store_ready(paths: RunPaths) -> bool:
    """True once the job's store exists with its metadata written (readable by viewers)."""
    if not paths.db.is_file():
        return False
    from optitui.store.reader import RunReader

    try:
        with RunReader(paths.root) as reader:
            return "schema_version" in reader.meta()
    except Exception:  # created but not initialised yet
        return False


def start_job(
    opts: JobOptions,
    *,
    timeout: float | None = None,
    progress: Callable[[float], None] | None = None,
) -> Launched:
    """Spawn the job and wait until its run store is ready.

    Raises LaunchError (with the job's output) when it exits first, and
    TimeoutError after ``timeout`` seconds (the job is then terminated).
    ``progress(elapsed)`` is called while waiting, about once a second.
    """
    script = opts.script.resolve()
    paths = create_run_dir(opts.root, script.stem, opts.run_dir)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW
    try:  # made fresh: never appended to through a link or to a file already there
        fd = os.open(paths.output, flags, 0o600)
    except OSError as exc:
        why = "exists (optitui did not make it)" if exc.errno == errno.EEXIST else exc.strerror
        raise RunDirError(f"cannot create {paths.output}: {why}") from None
    try:
        proc = subprocess.Popen(
            child_argv(replace(opts, script=script), paths.root),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,  # setsid: no SIGHUP or Ctrl+C from our terminal
            close_fds=True,
        )
    finally:
        os.close(fd)
    t0 = time.monotonic()
    next_progress = 1.0
    try:
        while not store_ready(paths):
            code = proc.poll()
            if code is not None:
                out = tail(paths.output)
                raise LaunchError(
                    f"the job exited with code {code} before training started"
                    + (f"; its output ({paths.output}):\n{out}" if out else "")
                )
            elapsed = time.monotonic() - t0
            if timeout is not None and elapsed > timeout:
                proc.terminate()
                raise TimeoutError(f"the job did not start within {timeout:g} s")
            if progress is not None and elapsed >= next_progress:
                progress(elapsed)
                next_progress += 1.0
            time.sleep(0.05)
    except KeyboardInterrupt:  # Ctrl+C while it starts: it has not trained, end it
        proc.terminate()
        raise
    return Launched(paths, proc)
