"""What a viewer shows is what the job did: every change of the job's state (rollback,
restore while paused, a scheduler cycling momentum) reaches the store at once, and the
export tells a restore's branches apart."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import wait_for
from jobs import make_trainer, tiny_job
from torch import nn

from optitui.store import export
from optitui.store.client import send
from optitui.store.reader import RunReader


def nan_at(calls: set[int]) -> Any:
    """A step_fn whose loss is NaN on the given calls (counting from 1)."""
    n = [0]

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        n[0] += 1
        x, y = batch
        loss = nn.functional.mse_loss(model(x), y)
        return loss * float("nan") if n[0] in calls else loss

    return step_fn


def test_a_rollback_shows_the_halved_lr_at_once(tmp_path: Path) -> None:
    job = tiny_job("SGD", {"lr": 0.05}, on_divergence="rollback", max_steps=60)
    job.loss_fn, job.step_fn = None, nan_at({41})
    t = make_trainer(tmp_path, job, flush_every=8, flush_seconds=1e9)
    t.guard.policy.snapshot_every = 16
    assert t.run() == "finished"
    with RunReader(t.paths.root) as r:
        rolled = next(e for e in r.events() if "rolled back" in e.message)
        rows = r.conn.execute("SELECT step, data FROM groups ORDER BY id").fetchall()
        cols = r.read_metrics().columns
    # the snapshot written with the rollback (at its step) already has the new lr
    after = [json.loads(d) for s, d in rows if s == rolled.step]
    assert after and [g["values"]["lr"] for g in after[-1]] == [0.025, 0.025]
    lrs = list(cols["lr/0"])
    assert lrs[-1] == 0.025 and 0.05 in lrs


def test_a_restore_while_paused_shows_its_step_at_once(tmp_path: Path, run_in_thread: Any) -> None:
    t = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.05}), flush_every=4)
    run_in_thread(t)
    reader = RunReader(t.paths.root)
    wait_for(lambda: reader.status().step > 10, what="steps")
    saved = send(t.paths, "save").outcome
    assert saved is not None and saved.applied
    wait_for(lambda: reader.status().step > saved.step + 20, what="more steps")
    assert send(t.paths, "pause").outcome.applied  # type: ignore[union-attr]
    wait_for(lambda: reader.status().state == "paused", what="paused")
    back = send(t.paths, "restore", {"id": "latest"}).outcome
    assert back is not None and back.applied
    assert f"to step {saved.step}" in str(back.reason)
    st = reader.status()  # no resume needed: the status says where the run is now
    assert (st.state, st.step) == ("paused", saved.step)


def test_a_scheduler_cycling_momentum_is_shown(tmp_path: Path, run_in_thread: Any) -> None:
    job = tiny_job("SGD", {"lr": 0.01, "momentum": 0.9})
    job.scheduler = torch.optim.lr_scheduler.OneCycleLR(
        job.optimizer, max_lr=0.05, total_steps=100_000, base_momentum=0.5, max_momentum=0.95
    )
    t = make_trainer(tmp_path, job, flush_every=8)
    run_in_thread(t)
    reader = RunReader(t.paths.root)
    _, first = wait_for(lambda: reader.groups()[1] and reader.groups(), what="a snapshot")
    assert first[0]["values"]["momentum"] == pytest.approx(0.95)

    def moved() -> Any:
        _, groups = reader.groups()
        return groups[0]["values"]["momentum"] < 0.95 - 1e-6

    wait_for(moved, 20, "the cycled momentum in a snapshot")


# -- export: branches after a restore --------------------------------------------------
def test_export_tells_branches_apart_and_puts_val_losses_on_theirs(
    tmp_path: Path, run_in_thread: Any
) -> None:
    job = tiny_job("SGD", {"lr": 0.05}, val_data=[(torch.randn(8, 8), torch.zeros(8, 1))])
    job.val_every = 5
    t = make_trainer(tmp_path, job, flush_every=4)
    run_in_thread(t)
    reader = RunReader(t.paths.root)
    wait_for(lambda: reader.status().step >= 12, what="steps")
    saved = send(t.paths, "save").outcome
    assert saved is not None and saved.applied
    wait_for(lambda: reader.status().step > saved.step + 12, what="more steps")
    assert send(t.paths, "restore", {"id": "latest"}).outcome.applied  # type: ignore[union-attr]
    wait_for(lambda: reader.status().step > saved.step + 12, what="steps on the new branch")
    t.request_stop("test over")
    wait_for(lambda: reader.status().state == "stopped", what="the end")
    out = io.StringIO()
    export.write(reader, out, "jsonl")
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {r["branch"] for r in rows} == {0, 1}
    first = [r for r in rows if r["branch"] == 0]
    second = [r for r in rows if r["branch"] == 1]
    assert second[0]["step"] == saved.step + 1  # the new branch starts after the checkpoint
    assert [r["step"] for r in first] == list(range(1, len(first) + 1))
    # each val loss is on the row of the branch it was recorded on, once
    vals = reader.val()
    with_val = [(r["branch"], r["step"]) for r in rows if r["val_loss"] is not None]
    assert len(with_val) == len(vals)
    on_old = [s for b, s in with_val if b == 0]
    on_new = [s for b, s in with_val if b == 1]
    assert on_old and on_new and all(s % 5 == 0 for s in on_old + on_new)
    assert max(on_old) > saved.step and min(on_new) > saved.step
    text = io.StringIO()
    export.write(reader, text, "csv")
    header = text.getvalue().splitlines()[0].split(",")
    assert header[0] == "branch" and "val_loss" in header
