"""What a run records about its set-up once, at start, so that two runs can be told apart
later (``optitui diff``): the scheduler's settings, the batch size where the data says
it, the seed, the script's arguments and a digest of its text.

Everything here runs once per run, before the first step; nothing touches the data.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from optitui.trainer.core import hparams
from optitui.trainer.core.job import Job, Scheduler

#: scheduler state that is the run's progress, not a setting
_PROGRESS = {"last_epoch", "best", "num_bad_epochs", "cooldown_counter", "mode_worse", "verbose"}
#: private scheduler fields that hold a setting, under the name the constructor gives it
_PRIVATE_SETTINGS = {"_milestones": "milestones", "_anneal_func_type": "anneal_strategy"}
#: a script larger than this is not read for its digest
_DIGEST_LIMIT = 16 * 1024 * 1024


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf": JSON has no such number
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if callable(value):  # LambdaLR's functions: their names are what can be compared
        return getattr(value, "__qualname__", type(value).__name__)
    return hparams.plain(value)


def scheduler_settings(scheduler: Scheduler | None) -> dict[str, Any] | None:
    """The scheduler's constructor settings as plain data (its progress left out);
    a SequentialLR or ChainedScheduler lists the class and settings of each it holds."""
    if scheduler is None:
        return None
    state = scheduler.state_dict()
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key in _PROGRESS or key == "_schedulers":
            continue
        if key.startswith("_") and key not in _PRIVATE_SETTINGS:
            continue
        out[_PRIVATE_SETTINGS.get(key, key)] = _plain(value)
    if "lr_lambdas" in out:
        lambdas = getattr(scheduler, "lr_lambdas", None)
        out["lr_lambdas"] = _plain(list(lambdas)) if isinstance(lambdas, list) else None
    inner = getattr(scheduler, "_schedulers", None)
    if isinstance(inner, list | tuple):
        out["schedulers"] = [
            {"class": type(s).__name__, **(scheduler_settings(s) or {})} for s in inner
        ]
    return out


def loader_batch_size(data: Any) -> int | None:
    """A DataLoader's batch size (None for any other data, or a loader with a batch sampler)."""
    size = getattr(data, "batch_size", None)
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def job_facts(job: Job) -> dict[str, Any]:
    """The Job's settings that ``optitui diff`` compares, beyond those the trainer already
    records (optimizer, grad_accum, clip_grad_norm, max_steps, max_epochs). The script's
    facts are None here: what starts a job from a script records them over these."""
    return {
        "script": None,
        "script_args": None,
        "script_sha256": None,
        "seed": job.seed,
        "batch_size": loader_batch_size(job.train_data),
        "scheduler_settings": scheduler_settings(job.scheduler),
        "scheduler_interval": None if job.scheduler is None else job.scheduler_interval,
        "val_every": job.val_every,
        "precision": job.precision,
    }


def script_facts(script: Path | None, args: list[str]) -> dict[str, Any]:
    """The script's arguments and the SHA-256 of its text (None when it cannot be read):
    the same path may hold another script by the next run."""
    digest = None
    if script is not None:
        try:
            if script.is_file() and script.stat().st_size <= _DIGEST_LIMIT:
                digest = hashlib.sha256(script.read_bytes()).hexdigest()
        except OSError:
            pass
    return {"script_args": list(args), "script_sha256": digest}
