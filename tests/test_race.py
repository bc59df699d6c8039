"""The optimizer race on a live job: exact restore, every candidate form, refusals,
divergence, cancel, apply, and what it records."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import pytest
import torch
from jobs import command, make_trainer, regression_data
from test_rangetest import dropout_job, params, same
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data import DataLoader

from optitui.lrfind.schedule import should_stop
from optitui.store.commands import Command
from optitui.store.reader import RunReader
from optitui.trainer.control import commands as control
from optitui.trainer.loop.trainer import Trainer

N, AT = 30, 11


def at_boundary(t: Trainer, *cmds: Command) -> None:
    """Apply ``cmds`` as the loop does at a step boundary: answers, then the race."""
    t._apply_commands(deque(cmds))


def train(t: Trainer, steps: int, at: dict[int, list[Command]] | None = None) -> None:
    if t.state == "starting":
        t._start()
    for _ in range(steps):
        if t._ramps:
            t._advance_ramps()
        if at and t.step in at:
            at_boundary(t, *at[t.step])
        t._train_step()
        t.step += 1


def race(*cands: str, **kw: Any) -> Command:
    return command("race", candidates=list(cands), **kw)


def answered(t: Trainer, cid: str) -> Any:
    t.recorder.close()
    with RunReader(t.paths.root) as r:
        return r.outcome(cid), r.races()


CANDIDATES = ("lr*0.5", "lr*2", "weight_decay=0.05", "optimizer=SGD,momentum=0.9")


@pytest.mark.parametrize("to_disk", [False, True])
def test_a_race_mid_run_changes_nothing(tmp_path: Path, to_disk: bool) -> None:
    """AdamW with dropout, a cosine schedule and a shuffling loader: the run after a race
    of every candidate form is the run without it, bit for bit."""
    t = make_trainer(tmp_path, dropout_job(), name="straight")
    train(t, N)
    want = params(t)
    job = dropout_job(snapshot_limit_gb=0.0 if to_disk else 1.0)
    t = make_trainer(tmp_path, job, name="raced")
    train(t, N, {AT: [race(*CANDIDATES, steps=8)]})
    assert same(params(t), want)  # bit-identical: the race left no trace
    assert type(t.optimizer).__name__ == "AdamW" and t.optimizer is job.optimizer
    (done,) = t.races.values()
    assert done.status == "done" and done.step == AT
    assert done.states == ["done"] * 5 and all(len(c) == 8 for c in done.losses)
    assert not list(t.paths.root.glob(".lrfind-*"))  # a disk snapshot is gone
    # the same batches for every candidate: the first step's loss is the same for all
    assert len({c[0] for c in done.losses}) == 1
    # and they did differ afterwards: each candidate really trained with its settings
    assert len({c[-1] for c in done.losses}) == 5


def test_the_race_is_recorded_with_its_table(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, dropout_job(val_data=DataLoader(regression_data(64, 1), 16)))
    train(t, 5)
    cmd = race("lr*0.5", "lr*2", steps=12)
    at_boundary(t, cmd)
    out, (stored,) = answered(t, cmd.id)
    assert out.applied and "3 candidates x 12 steps, then validation" in out.reason
    assert stored.id == cmd.id and stored.status == "done"
    assert stored.config["candidates"] == ["current", "lr*0.5", "lr*2"]
    rows = stored.results
    assert sorted(r["rank"] for r in rows) == [1, 2, 3]
    assert all(r["val"] is not None for r in rows) and rows[0]["ranked_by"] == "val"
    assert [r["val"] for r in rows] == sorted(r["val"] for r in rows)
    current = next(r for r in rows if r["candidate"] == 0)
    other = next(r for r in rows if r["candidate"] == 2)
    assert current["change"] is None
    assert other["change"] == pytest.approx(other["final"] - current["final"])
    assert other["noise"] is not None and other["noise"] > 0
    secs = stored.data["seconds"]
    assert len(secs["candidates"]) == 3 and secs["snapshot"] > 0 and secs["restore"] > 0


def test_every_candidate_form_runs_its_settings(tmp_path: Path) -> None:
    """What each candidate trained with, seen from inside optimizer.step()."""
    t = make_trainer(tmp_path, dropout_job())
    train(t, 3)
    seen: list[tuple[str, float, float, Any]] = []

    def spy(opt: torch.optim.Optimizer, *_: Any) -> None:
        g = opt.param_groups
        seen.append((type(opt).__name__, g[0]["lr"], g[1]["lr"], g[1].get("weight_decay")))

    # a global hook: it sees the swapped optimizer too
    handle = register_optimizer_step_pre_hook(spy)
    try:
        body, head = (g["lr"] for g in t.optimizer.param_groups)
        at_boundary(t, race("lr*0.5", "weight_decay=0.05", "optimizer=SGD,lr=0.1", steps=2))
    finally:
        handle.remove()
    by_candidate = [seen[i : i + 2] for i in range(0, 8, 2)]
    current, half, decay, swap = (c[0] for c in by_candidate)
    assert current[:3] == ("AdamW", body, head)
    assert half[:3] == ("AdamW", body * 0.5, head * 0.5)
    assert decay[0] == "AdamW" and decay[3] == 0.05
    assert swap[:3] == ("SGD", 0.1, 0.1)
    assert t.optimizer.param_groups[1]["weight_decay"] != 0.05  # all put back


def test_a_group_limits_field_changes(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, dropout_job())
    train(t, 2)
    lrs: list[list[float]] = []
    t.optimizer.register_step_pre_hook(
        lambda opt, a, k: lrs.append([g["lr"] for g in opt.param_groups])
    )
    before = [g["lr"] for g in t.optimizer.param_groups]
    at_boundary(t, race("lr*2", steps=1, group="head"))
    assert lrs == [before, [before[0], before[1] * 2]]


@pytest.mark.parametrize(
    ("cands", "kw", "why"),
    [
        (["momentum=0.9"], {}, "candidate 'momentum=0.9'"),  # AdamW has no momentum
        (["lr*2", "betas=0.9,1.5"], {}, "candidate 'betas=0.9,1.5'"),
        (["optimizer=SGD,betas=0.9,0.99"], {}, "betas"),
        (["lr*2"], {"group": "nope"}, "no group named 'nope'"),
        (["lr*2"], {"val": True}, "no val_data"),
        (["lr*2", "lr*2"], {}, "given twice"),
        (["current"], {}, "always runs first"),
        (["lr*-1"], {}, "factor"),
    ],
)
def test_a_bad_candidate_refuses_the_whole_race(
    tmp_path: Path, cands: list[str], kw: dict[str, Any], why: str
) -> None:
    t = make_trainer(tmp_path, dropout_job())
    train(t, 2)
    before = params(t)
    cmd = race(*cands, **kw)
    at_boundary(t, cmd)
    out, stored = answered(t, cmd.id)
    assert not out.applied and why in out.reason
    assert stored == [] and not t.races and same(params(t), before)


def test_a_diverging_candidate_ends_alone(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, dropout_job())
    train(t, 4)
    want = params(t)
    at_boundary(t, race("lr*1e6", "lr*0.5", steps=15))
    (done,) = t.races.values()
    assert done.status == "done"
    assert done.states == ["done", "diverged", "done"]
    assert done.notes[1] and len(done.losses[1]) < 15 and len(done.losses[2]) == 15
    assert same(params(t), want)
    ranked = [r["text"] for r in done.results]
    assert ranked[-1] == "lr*1e6" and done.results[-1]["final"] is None
    # the blow-up rules' notes start with their state: the refusal says it once
    done.notes[1] = should_stop(9.0, 1.0, 5.0)
    cmd = command("race-apply", id="latest", candidate=1)
    at_boundary(t, cmd)
    out, _ = answered(t, cmd.id)
    assert not out.applied
    assert out.reason.endswith("did not finish (diverged: smoothed loss 9 > 5 x best 1)")


def test_cancel_mid_race_restores(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, dropout_job(), name="straight")
    train(t, N)
    want = params(t)
    t = make_trainer(tmp_path, dropout_job(), name="cancelled")
    train(t, AT)
    calls = {"n": 0}
    step = t.optimizer.step

    def counting(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 13:  # in the second candidate: a cancel arrives
            t.commands.append(Command("c1", "race-cancel", {}, "{}"))
        return step(*a, **k)

    t.optimizer.step = counting  # type: ignore[method-assign]
    at_boundary(t, race("lr*0.5", "lr*2", steps=10))
    del t.optimizer.step
    (done,) = t.races.values()
    assert done.status == "cancelled" and done.states == ["done", "cancelled", "waiting"]
    assert "candidate 1 (lr*0.5) after 3 steps" in (done.message or "")
    train(t, N - AT)
    assert same(params(t), want)
    t.recorder.close()
    with RunReader(t.paths.root) as r:
        out = r.outcome("c1")
        assert out is not None and out.applied
        assert r.races()[0].status == "cancelled"


def test_cancel_before_it_starts_and_nothing_to_cancel(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, dropout_job())
    train(t, 2)
    at_boundary(t, race("lr*2", steps=3), command("race-cancel"))
    assert not t.races
    cmd = Command("c2", "race-cancel", {}, "{}")
    at_boundary(t, cmd)
    out, _ = answered(t, "c2")
    assert not out.applied and "no race is running" in out.reason


def test_commands_and_ramps_wait_for_the_race(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, dropout_job())
    train(t, 2, {1: [command("set", values={"weight_decay": 0.03}, ramp=5)]})
    ramps = list(t._ramps)
    assert len(ramps) == 2
    seen: list[tuple[float, float]] = []
    edit = Command("e1", "set", {"values": {"eps": 1e-6}}, "{}")

    def spy(opt: torch.optim.Optimizer, *_: Any) -> None:
        g = opt.param_groups[0]
        seen.append((g["weight_decay"], g["eps"]))
        if len(seen) == 1:  # a command sent while the race runs
            t.commands.append(edit)

    t.optimizer.register_step_pre_hook(spy)
    first = (t.optimizer.param_groups[0]["weight_decay"], t.optimizer.param_groups[0]["eps"])
    at_boundary(t, race("lr*2", steps=3))
    assert seen == [first] * 6  # no ramp step, no edit during the race
    assert t._ramps == ramps and list(t.commands) == [edit]  # both still waiting
    t._take_commands()  # the next boundary
    assert t.optimizer.param_groups[0]["eps"] == 1e-6 and not t.commands


def test_race_apply_goes_the_way_of_the_typed_command(tmp_path: Path) -> None:
    sched_job = dropout_job()
    t = make_trainer(tmp_path, sched_job)
    train(t, 3)
    at_boundary(t, race("lr*2", "optimizer=SGD,momentum=0.9", steps=3))
    before = [t.lr.mult[i] for i in range(2)]
    at_boundary(t, command("race-apply", id="latest", candidate=1))
    assert [t.lr.mult[i] for i in range(2)] == [m * 2 for m in before]  # a multiplier
    (rid,) = t.races
    at_boundary(t, command("race-apply", id=rid, candidate=2))
    assert type(t.optimizer).__name__ == "SGD" and t.optimizer.param_groups[0]["momentum"] == 0.9
    assert t.lr.scheduler is not None and t.lr.scheduler.optimizer is t.optimizer
    cmd = Command("a0", "race-apply", {"id": "latest", "candidate": 0}, "{}")
    at_boundary(t, cmd)
    out, _ = answered(t, "a0")
    assert out.applied and "nothing to change" in out.reason


def test_a_loop_that_is_not_ours_says_so(tmp_path: Path) -> None:
    from optitui import watch

    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with watch(opt, model, run_dir=tmp_path / "probe") as probe:
        loss = model(torch.randn(2, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        probe.step(loss)
        assert probe.trainer is not None
        with pytest.raises(control.Rejection, match="own steps on its own data"):
            control.apply(probe.trainer, race("lr*2"))


def test_send_prints_the_table_and_race_apply_answers(
    tmp_path: Path, run_in_thread: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``optitui send RUN race ...`` on a live job: applied, then the ranked table."""
    from conftest import wait_for

    from optitui.cli import main as cli

    val = DataLoader(regression_data(64, 1), batch_size=16)
    t = make_trainer(tmp_path, dropout_job(val_data=val, max_steps=100_000), flush_every=8)
    run_in_thread(t)
    reader = RunReader(t.paths.root)
    wait_for(lambda: reader.read_metrics().length > 10, what="training")
    run = str(t.paths.root)
    code = cli(["send", run, "race", "steps=20", "lr*0.5", "lr*3", "momentum=0.8"])
    out, errs = capsys.readouterr()
    assert code == 1 and "momentum" in errs  # AdamW has none: the whole race refused
    assert reader.races() == []
    code = cli(["send", run, "race", "steps=20", "lr*0.5", "lr*3", "betas=0.8,0.99"])
    out, errs = capsys.readouterr()
    assert code == 0, errs
    lines = out.splitlines()
    assert lines[0].startswith("applied after step") and "4 candidates x 20 steps" in lines[0]
    assert "4 candidates x 20 steps:" in out and "snapshot" in out and "restores" in out
    header = next(i for i, x in enumerate(lines) if x.strip().startswith("rank"))
    assert "final loss" in lines[header] and "val loss" in lines[header]
    rows = lines[header + 1 : header + 5]
    names = [r.split()[2] for r in rows]
    assert sorted(names) == sorted(["current", "lr*0.5", "lr*3", "betas=0.8,0.99"])
    assert "(reference)" in next(r for r in rows if " current " in r)
    assert "noise band ±" in out and f"race-apply {reader.races()[0].id} N" in out
    code = cli(["send", run, "race-apply", "latest", "2"])
    out, errs = capsys.readouterr()
    assert code == 0 and "candidate 2 of race" in out and "lr*3" in out, errs
    code = cli(["send", run, "race-cancel"])
    out, errs = capsys.readouterr()
    assert code == 1 and "no race is running" in errs


def test_exact_with_lookahead_clipping_and_accumulation(tmp_path: Path) -> None:
    """What a step depends on beyond the model and the optimizer (lookahead's slow
    weights and count, clipping, micro-batches) is put back too, also after a swap."""
    setup = [command("lookahead", enabled=True, k=3, alpha=0.5), command("clip", max_norm=0.5)]

    def job() -> Any:
        return dropout_job(grad_accum=2)

    t = make_trainer(tmp_path, job(), name="straight")
    train(t, 20, {2: setup})
    want = params(t)
    t = make_trainer(tmp_path, job(), name="raced")
    train(t, 20, {2: setup, 7: [race("optimizer=SGD,lr=0.05,momentum=0.9", "lr*3", steps=5)]})
    assert [r.status for r in t.races.values()] == ["done"]
    assert same(params(t), want)


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ({"candidates": []}, "a list of 1 to 12 candidates"),
        ({"candidates": "lr*2"}, "a list of 1 to 12 candidates"),
        ({"candidates": [2.0]}, "is not a candidate's text"),
        ({"candidates": ["x" * 201]}, "is not a candidate's text"),
        ({"candidates": ["lr*2"] * 13}, "a list of 1 to 12 candidates"),
        ({"candidates": ["lr*2"], "steps": 0}, "steps"),
        ({"candidates": ["lr*2"], "steps": 100_001}, "steps"),
        ({"candidates": ["lr*2"], "val": "yes"}, "val"),
        ({"candidates": ["lr*2"], "seed": 1}, "unknown argument"),
    ],
)
def test_a_malformed_race_command_is_refused_at_the_inbox(args: dict[str, Any], why: str) -> None:
    from optitui.store.commands import CommandError, validate

    with pytest.raises(CommandError, match=why):
        validate("race", args)
    with pytest.raises(CommandError, match="candidate"):
        validate("race-apply", {"id": "latest", "candidate": -1})


def test_a_stop_during_a_race_ends_it_put_back(tmp_path: Path) -> None:
    """SIGTERM, Ctrl+C or a stop command while a race runs: the race ends at the next
    step, everything is put back, and the run stops at its boundary."""
    t = make_trainer(tmp_path, dropout_job())
    train(t, 6)
    want = params(t)
    calls = {"n": 0}

    def stop_midway(opt: torch.optim.Optimizer, *_: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            t.request_stop("SIGTERM")  # what the signal handler does

    t.optimizer.register_step_pre_hook(stop_midway)
    at_boundary(t, race("lr*2", steps=10))
    (done,) = t.races.values()
    assert done.status == "cancelled" and "the run is stopping" in (done.message or "")
    assert done.states == ["cancelled", "waiting"] and len(done.losses[0]) == 4
    assert same(params(t), want) and t.stopping()


def test_validation_reads_the_same_batches_for_every_candidate_and_leaves_them(
    tmp_path: Path,
) -> None:
    """val_data with a generator of its own (a shuffling loader, or random windows as in
    sample_runs/chargpt.py): every candidate's validation pass reads the same batches, and
    the run's own validation after the race reads what it would have without it."""
    gen = torch.Generator().manual_seed(1)
    val = DataLoader(regression_data(640, 1), batch_size=16, shuffle=True, generator=gen)
    t = make_trainer(tmp_path, dropout_job(val_data=val))
    train(t, 3)
    before = gen.get_state()
    at_boundary(t, race("lr*1", steps=4))  # the current settings twice
    (done,) = t.races.values()
    assert done.states == ["done", "done"] and done.losses[0] == done.losses[1]
    assert done.val_losses[0] is not None and done.val_losses[0] == done.val_losses[1]
    assert torch.equal(gen.get_state(), before)
