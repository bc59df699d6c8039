"""Where a probe's run goes: the directory and options ``optitui run`` hands a script's
first probe, or a new directory (made by rank 0 under torch.distributed, and shared)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from optitui.store.layout import RunDirError, RunPaths, create_run_dir
from optitui.trainer.core import dist
from optitui.trainer.core.dist import DistInfo

#: the run directory ``optitui run SCRIPT`` gives a script without setup(); the first
#: ``watch()`` in the process uses it (and takes it out of the environment)
ENV_RUN_DIR = "OPTITUI_RUN_DIR"

_SCRIPT_META: dict[str, Any] = {}
_SCRIPT_DEFAULTS: dict[str, Any] = {}


def set_script_meta(
    meta: dict[str, Any],
    *,
    max_steps: int | None = None,
    on_divergence: str | None = None,
    health_every: int | None = None,
) -> None:
    """What ``optitui run`` gives the first probe made without a run_dir: metadata, and
    its --max-steps, --on-divergence and --health-every (unless the script's watch()
    call sets them).
    Every rank's first probe takes them; rank 0's also takes :data:`ENV_RUN_DIR`."""
    _SCRIPT_META.clear()
    _SCRIPT_META.update(meta)
    _SCRIPT_DEFAULTS.clear()
    _SCRIPT_DEFAULTS.update(
        max_steps=max_steps, on_divergence=on_divergence, health_every=health_every, pending=True
    )


def run_paths(
    info: DistInfo | None,
    root: Path | str,
    stem: str,
    run_dir: Path | str | None,
    device: torch.device,
) -> RunPaths:
    """The run directory: made here, or under torch.distributed by rank 0 and shared
    (every rank must use rank 0's choice, and fails with rank 0's error)."""
    if info is None:
        return create_run_dir(root, stem, run_dir)
    made: tuple[str, str] | None = None  # ("dir", path) or ("error", why)
    error: Exception | None = None
    if info.leader:
        try:
            made = ("dir", str(create_run_dir(root, stem, run_dir).root))
        except (OSError, ValueError, RunDirError) as exc:
            made, error = ("error", f"{type(exc).__name__}: {exc}"), exc
    kind, value = dist.broadcast_object(made, device)  # the model's GPU, not cuda:0
    if error is not None:
        raise error
    if kind != "dir":
        raise RuntimeError(f"rank 0 could not make the run directory: {value}")
    return RunPaths(Path(value))


@dataclass
class Handed:
    """What a probe takes from ``optitui run``: its run directory (rank 0), its options
    unless the watch() call gave its own, and metadata."""

    run_dir: str | None = None
    max_steps: int | None = None
    on_divergence: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    health_every: int | None = None


def take_handed(
    run_dir: Path | str | None,
    max_steps: int | None,
    on_divergence: str | None,
    health_every: int | None = None,
) -> Handed:
    """The first probe made without a run_dir under ``optitui run`` serves its run; any
    other keeps what its call gave."""
    if run_dir is not None:
        return Handed(None, max_steps, on_divergence, health_every=health_every)
    env_dir = os.environ.pop(ENV_RUN_DIR, None)
    # (under torchrun only rank 0 has the directory; every rank has the options)
    if not (bool(_SCRIPT_DEFAULTS.pop("pending", False)) or env_dir is not None):
        return Handed(None, max_steps, on_divergence, health_every=health_every)
    return Handed(
        env_dir,
        max_steps if max_steps is not None else _SCRIPT_DEFAULTS.get("max_steps"),
        on_divergence or _SCRIPT_DEFAULTS.get("on_divergence"),
        dict(_SCRIPT_META),
        health_every if health_every is not None else _SCRIPT_DEFAULTS.get("health_every"),
    )
