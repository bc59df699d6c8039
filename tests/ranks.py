"""Two ranks under torchrun (gloo, CPU), steered through the run store by a test.

The scripts these helpers start write, per rank, ``lrs-RANK.json`` (the lr of
every group at every optimizer step, as the optimizer's own pre-hook saw it) and
``params-RANK.pt`` (the final parameters). Identical files on both ranks show
that every command landed at the same step on each.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from conftest import REPO, wait_for

from optitui.store import client
from optitui.store.client import NoAnswer
from optitui.store.layout import RunPaths
from optitui.store.reader import RunReader

TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2")

#: what every script adds to record the lrs each step used and the final parameters
RECORDER = """
import json as _json, os as _os
import torch as _torch

def record_lrs(optimizer, out):
    log = []
    optimizer.register_step_pre_hook(
        lambda o, a, k: log.append([float(g["lr"]) for g in o.param_groups]))
    rank = _os.environ["RANK"]

    def dump(model):
        with open(_os.path.join(out, f"lrs-{rank}.json"), "w") as f:
            _json.dump(log, f)
        _torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                    _os.path.join(out, f"params-{rank}.pt"))
    return dump
"""


@dataclass
class Steered:
    applied: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    output: str = ""
    returncode: int | None = None


def steer(
    argv: list[str],
    run_dir: Path,
    plan: list[tuple[str, dict[str, Any]]],
    *,
    env: dict[str, str] | None = None,
    start_timeout: float = 120,
) -> Steered:
    """Start ``argv``, send ``plan`` one command at a time once it trains, wait for it
    to end. A range test is waited out before the next command."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **(env or {})}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
        cwd=REPO,
    )
    got = Steered()
    try:
        wait_for(
            lambda: (run_dir / "store.sqlite").exists() or proc.poll() is not None,
            start_timeout,
            "store",
        )
        if plan:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            _send(run_dir, plan, proc, got, start_timeout)
        got.output, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
            got.output += proc.communicate(timeout=30)[0]
    got.returncode = proc.returncode
    return got


def _send(
    run_dir: Path,
    plan: list[tuple[str, dict[str, Any]]],
    proc: subprocess.Popen[str],
    got: Steered,
    start_timeout: float,
) -> None:
    """Once the job trains, send ``plan`` one command at a time."""
    reader = RunReader(run_dir)
    wait_for(lambda: reader.status().step > 3 or proc.poll() is not None, start_timeout, "training")
    for kind, args in plan:
        try:
            sent = client.send(RunPaths(run_dir), kind, args, timeout=60)
        except NoAnswer as exc:
            got.rejected.append(f"{kind}: no answer: {exc}")
            break
        assert sent.outcome is not None
        line = f"{kind} {args}: {sent.outcome.reason or 'applied'} at {sent.outcome.step}"
        (got.applied if sent.outcome.applied else got.rejected).append(line)
        if kind == "lr-find" and sent.outcome.applied:
            wait_for(
                lambda: any(t.status != "running" for t in reader.range_tests()),
                90,
                "range test",
            )
    reader.close()


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun puts each rank in a session
    of its own, so killing its process group would leave the ranks running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, found = [pid], []
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    for p in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def rank_logs(out: Path) -> list[list[list[float]]]:
    return [json.loads((out / f"lrs-{r}.json").read_text()) for r in (0, 1)]


def same_params(out: Path) -> bool:
    p0, p1 = (torch.load(out / f"params-{r}.pt", weights_only=True) for r in (0, 1))
    return bool(p0.keys() == p1.keys() and all(torch.equal(p0[k], p1[k]) for k in p0))
