"""Each command takes effect at a step boundary and is acknowledged with that step."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from conftest import wait_for
from jobs import make_trainer, tiny_job

from optitui.store import client, commands
from optitui.store.reader import RunReader


def _lr_at(reader: RunReader, group: int, step: int) -> float:
    cols = reader.read_metrics()
    steps = list(cols.columns["step"])
    return cols.columns[f"lr/{group}"][steps.index(float(step))]


def _wait_step(reader: RunReader, at_least: int) -> None:
    wait_for(lambda: reader.read_metrics().length >= at_least, what=f"{at_least} steps recorded")


def test_set_applies_at_the_next_step(tmp_path: Path, run_in_thread: Any) -> None:
    trainer = make_trainer(tmp_path, tiny_job(), flush_every=8, flush_seconds=0.05)
    running = run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    _wait_step(reader, 20)
    sent = client.send(trainer.paths, "set", {"values": {"lr": 0.123}, "group": "head"})
    out = sent.outcome
    assert out is not None and out.applied and out.reason is None
    s = out.step
    _wait_step(reader, s + 2)
    assert _lr_at(reader, 1, s) == 0.01  # the step before the boundary used the old lr
    assert _lr_at(reader, 1, s + 1) == 0.123  # the next one, the new
    assert _lr_at(reader, 0, s + 1) == 0.01  # the other group is untouched
    step, groups = reader.groups()
    assert step == s and groups[1]["values"]["lr"] == 0.123
    events = [e.message for e in reader.events() if e.kind == "command"]
    assert any(f"applied after step {s}" in m for m in events)
    running.stop()
    assert running.error is None


def test_scale_lr_all_groups(tmp_path: Path, run_in_thread: Any) -> None:
    trainer = make_trainer(tmp_path, tiny_job(), flush_every=8, flush_seconds=0.05)
    run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    _wait_step(reader, 10)
    out = client.send(trainer.paths, "scale-lr", {"factor": 0.5}).outcome
    assert out is not None and out.applied
    _wait_step(reader, out.step + 1)
    assert _lr_at(reader, 0, out.step + 1) == 0.005
    assert _lr_at(reader, 1, out.step + 1) == 0.005


def test_pause_step_resume_stop(tmp_path: Path, run_in_thread: Any) -> None:
    trainer = make_trainer(tmp_path, tiny_job(), flush_every=8, flush_seconds=0.05)
    running = run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    _wait_step(reader, 10)

    paused = client.send(trainer.paths, "pause").outcome
    assert paused is not None and paused.applied
    wait_for(lambda: reader.status().state == "paused", what="paused state")
    at = reader.status().step
    assert at == paused.step == trainer.step
    wait_for(lambda: reader.read_metrics().length == at, what="flush while paused")

    stepped = client.send(trainer.paths, "step", {"n": 3}).outcome
    assert stepped is not None and stepped.applied and stepped.step == at
    wait_for(
        lambda: reader.status().step == at + 3 and reader.status().state == "paused",
        what="three steps then paused",
    )
    assert trainer.step == at + 3

    resumed = client.send(trainer.paths, "resume").outcome
    assert resumed is not None and resumed.applied and resumed.step == at + 3
    _wait_step(reader, at + 20)

    stopped = client.send(trainer.paths, "stop").outcome
    assert stopped is not None and stopped.applied
    running.thread.join(10)
    assert running.result == "stopped"
    status = reader.status()
    assert status.state == "stopped"
    # the step the stop took effect at is the last step run, and every step was flushed
    assert status.step == stopped.step == reader.read_metrics().length


def test_rejected_command_changes_nothing(tmp_path: Path, run_in_thread: Any) -> None:
    trainer = make_trainer(
        tmp_path, tiny_job(opt_kwargs={"momentum": 0.9}), flush_every=8, flush_seconds=0.05
    )
    run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    _wait_step(reader, 5)
    pause = client.send(trainer.paths, "pause").outcome
    assert pause is not None and pause.applied
    before = copy.deepcopy(trainer.group_snapshot())
    # one valid field and one invalid: nothing of it may be applied
    out = client.send(trainer.paths, "set", {"values": {"lr": 0.5, "momentum": -0.1}}).outcome
    assert out is not None and not out.applied
    assert out.reason is not None and "momentum: got -0.1" in out.reason and ">= 0" in out.reason
    for bad, needle in [
        ({"values": {"betas": [0.9, 0.99]}}, "betas: got"),
        ({"values": {"lr": 0.1}, "group": 7}, "group 7 does not exist"),
        ({"values": {"lr": 0.1}, "group": "tail"}, "no group named 'tail'"),
        ({"values": {"nesterov": True, "dampening": 0.5}}, "nesterov needs momentum > 0"),
        ({"values": {"foreach": True}}, "not editable"),
    ]:
        o = client.send(trainer.paths, "set", bad).outcome
        assert o is not None and not o.applied and o.reason and needle in o.reason, (bad, o)
    assert trainer.group_snapshot() == before
    assert reader.groups()[1] == before


def test_commands_sent_before_start_apply_at_step_zero(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tiny_job(max_steps=50))
    lr = commands.send(trainer.paths, "set", {"values": {"lr": 0.2}, "group": 0})
    stop = commands.send(trainer.paths, "stop")
    assert trainer.run() == "stopped" and trainer.step == 0
    with RunReader(trainer.paths.root) as reader:
        for cid in (lr, stop):
            out = reader.outcome(cid)
            assert out is not None and out.applied and out.step == 0
        assert reader.groups()[1][0]["values"]["lr"] == 0.2
        assert reader.status().state == "stopped"
