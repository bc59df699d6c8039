"""The acknowledgement audit: every command kind, in every job mode (setup(), watch,
zero-code, Lightning, HF), is sent to a live job through ``optitui send``'s client, and
its claimed effect is checked where a viewer sees it: the group snapshot and the
controls at the moment of the answer, the status, and the exported step after it. A mode
that cannot do something must say so (rejected, with the reason), never "applied"."""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from audit_modes import MODES, Mode
from conftest import wait_for

from optitui.store import export
from optitui.store.client import send
from optitui.store.commands import KINDS
from optitui.store.reader import CommandOutcome, RunReader

pytestmark = pytest.mark.slow


class Audit:
    """Sends commands to one live job and keeps what each answer claimed."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.reader = RunReader(mode.paths.root)
        self.later: list[Any] = []  # checks on the exported steps, once the run is over
        self.seen: dict[str, str] = {}  # command kind -> applied / rejected: reason

    def ask(self, kind: str, **args: Any) -> CommandOutcome:
        out = send(self.mode.paths, kind, args, timeout=60).outcome
        assert out is not None, kind
        self.seen[kind] = "applied" if out.applied else f"rejected: {out.reason}"
        return out

    def applied(self, kind: str, **args: Any) -> CommandOutcome:
        if kind in self.mode.refuses:  # this mode cannot: it must say so
            out = self.ask(kind, **args)
            assert not out.applied and self.mode.refuses[kind] in str(out.reason), out
            return out
        out = self.ask(kind, **args)
        assert out.applied, (kind, out)
        return out

    def groups(self) -> list[dict[str, Any]]:
        return self.reader.groups()[1]

    def controls(self) -> dict[str, Any]:
        found: dict[str, Any] = self.reader.meta(refresh=True)["controls"]
        return found

    def steps(self, n: int) -> None:
        at = self.reader.status().step
        wait_for(lambda: self.reader.status().step >= at + n, 60, f"{n} more steps")

    def paused(self) -> None:
        wait_for(lambda: self.reader.status().state == "paused", 30, "paused")


def lr_column(rows: list[dict[str, Any]]) -> str:
    return next(k for k in rows[0] if k.startswith("lr/"))


def row_after(rows: list[dict[str, Any]], out: CommandOutcome, k: int = 1) -> dict[str, Any]:
    """The exported row of step ``out.step + k`` recorded after the answer."""
    return next(r for r in rows if r["step"] == out.step + k and r["time"] >= out.time)


def row_before(rows: list[dict[str, Any]], out: CommandOutcome) -> dict[str, Any]:
    """The exported row of the step the answer came after."""
    return [r for r in rows if r["step"] == out.step and r["time"] <= out.time][-1]


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mode]:
    if request.param == "lightning":
        pytest.importorskip("lightning.pytorch")
    if request.param == "hf":
        pytest.importorskip("transformers")
    m = MODES[request.param](tmp_path)
    try:
        yield m
    finally:
        if m.thread.is_alive() and m.paths.exists():
            send(m.paths, "stop", timeout=0)
            send(m.paths, "resume", timeout=0)
            m.thread.join(60)
        m.finish()


def test_every_command_is_answered_by_its_effect(mode: Mode) -> None:
    wait_for(lambda: mode.paths.exists(), 60, "the run store")
    a = Audit(mode)
    wait_for(lambda: a.reader.status().step >= 10, 60, "training")

    # hyperparameters: the snapshot at the answer, and the next step's recorded lr
    out = a.applied("set", values={"lr": 0.02}, group=0)
    assert a.groups()[0]["values"]["lr"] == pytest.approx(0.02)
    a.later.append(lambda rows, o=out: row_after(rows, o)[lr_column(rows)] == pytest.approx(0.02))
    a.steps(2)  # the multiplier settles at the next step (where the schedule moved to)
    before = a.groups()[0]["lr_multiplier"]
    out = a.applied("scale-lr", factor=0.5)
    assert a.groups()[0]["lr_multiplier"] == pytest.approx(before * 0.5)

    def halved(rows: list[dict[str, Any]], o: CommandOutcome = out) -> bool:
        lr = lr_column(rows)  # the schedule moves 0.1% a step meanwhile
        return row_after(rows, o)[lr] / row_before(rows, o)[lr] == pytest.approx(0.5, 0.01)

    a.later.append(halved)
    out = a.applied("scheduler", action="detach")
    assert a.controls()["scheduler_attached"] is False
    a.steps(4)
    a.later.append(
        lambda rows, o=out: len({row_after(rows, o, k)[lr_column(rows)] for k in (1, 2, 3)}) == 1
    )
    a.applied("scheduler", action="attach")
    assert a.controls()["scheduler_attached"] is True
    out = a.applied("clip", max_norm=1.0)
    assert a.controls()["clip"] == 1.0
    a.steps(2)
    a.later.append(lambda rows, o=out: math.isfinite(row_after(rows, o)["grad_norm"]))
    a.applied("clip", max_norm=None)
    assert a.controls()["clip"] is None
    a.applied("lookahead", enabled=True, k=5, alpha=0.5)
    assert a.controls()["lookahead"]["k"] == 5
    a.applied("lookahead", enabled=False)
    assert a.controls()["lookahead"] is None
    a.applied("checkpoint-policy", every=100_000)
    assert a.controls()["checkpoints"]["every"] == 100_000
    a.applied("divergence", action="rollback")
    assert a.controls()["divergence"]["action"] == "rollback"

    # groups and optimizer state
    out = a.applied("freeze", group=1)
    assert a.groups()[1]["frozen"] is True
    frozen = [p.detach().clone() for p in mode.optimizer().param_groups[1]["params"]]
    a.steps(3)
    assert all(
        torch.equal(p, q)
        for p, q in zip(mode.optimizer().param_groups[1]["params"], frozen, strict=True)
    )
    a.applied("unfreeze", group=1)
    assert a.groups()[1]["frozen"] is False
    out = a.applied("reset-state", group=0)
    assert a.reader.groups()[0] >= out.step  # a snapshot from the reset's step

    # pause, step, checkpoints (taken and restored while paused), resume
    out = a.applied("pause")
    a.paused()
    time.sleep(0.3)
    assert a.reader.status().step == out.step
    out = a.applied("step", n=2)
    wait_for(lambda: a.reader.status().step == out.step + 2, 30, "two steps")
    a.paused()
    kept = params(mode.model)
    saved_at = a.reader.status().step
    deferred = mode.name == "HF Trainer"  # it writes as it leaves the step: after resume
    sent = send(mode.paths, "save", {"tag": "audit"}, timeout=0 if deferred else 60)
    if not deferred:
        assert sent.outcome is not None and sent.outcome.applied, sent.outcome
        assert str(sent.outcome.reason).split()[-1] in mode.checkpoints()
    a.applied("resume")
    if deferred:
        save = wait_for(lambda: a.reader.outcome(sent.id), 60, "the save's answer")
        assert save.applied and str(save.reason).split()[-1] in mode.checkpoints()
    a.seen["save"] = "applied"
    a.steps(5)
    a.applied("pause")
    a.paused()
    moved_from = a.reader.status().step
    out = a.applied("restore", id="latest")
    assert all(torch.equal(p, q) for p, q in zip(params(mode.model), kept, strict=True))
    st = a.reader.status()  # where the run is now, also while paused
    assert st.step == (saved_at if mode.rewinds else moved_from), (st.step, out)
    a.applied("resume")

    # the range test: run, apply a suggestion, cancel one
    out = a.applied("lr-find", num_iter=10)
    wait_for(lambda: [t for t in a.reader.range_tests() if t.status != "running"], 60, "test")
    (test,) = a.reader.range_tests()
    assert test.status == "done", test.message
    rule = next((s["rule"] for s in test.suggestions if s["lr"] is not None), "steep")
    a.ask("lr-find-apply", id="latest", rule=rule)  # applied, or rejected with the reason
    out = a.applied("lr-find", num_iter=5000)
    a.applied("lr-find-cancel")
    wait_for(lambda: a.reader.range_tests()[-1].status == "cancelled", 60, "cancelled")

    # the race: run, apply a candidate, cancel one (the trainer's own loop only)
    out = a.applied("race", candidates=["lr*0.5"], steps=5)
    if out.applied:
        wait_for(lambda: [r for r in a.reader.races() if r.status != "running"], 60, "race")
        assert a.reader.races()[0].status == "done", a.reader.races()[0].message
        a.applied("race-apply", id="latest", candidate=1)
        a.applied("race", candidates=["lr*2"], steps=100_000)
        wait_for(lambda: a.reader.status().state == "race", 60, "racing")
        a.applied("race-cancel")
        wait_for(lambda: a.reader.races()[-1].status == "cancelled", 60, "race cancelled")
    else:
        a.applied("race-apply", id="latest", candidate=1)
        a.applied("race-cancel")

    # swapping the optimizer: the trainer's own loop only
    out = a.applied("swap-optimizer", name="Adam")
    if out.applied:
        assert a.controls()["optimizer"] == "Adam" and type(mode.optimizer()).__name__ == "Adam"

    # stop: no step after the one it was answered at
    out = a.applied("stop")
    mode.thread.join(60)
    mode.finish()
    st = a.reader.status()
    assert st.state == "stopped" and st.step == out.step, st
    text = io.StringIO()
    export.write(a.reader, text, "jsonl")
    rows = [json.loads(line) for line in text.getvalue().splitlines()]
    assert rows[-1]["step"] == out.step
    for i, check in enumerate(a.later):
        assert check(rows), (i, check.__defaults__)
    assert set(a.seen) == set(KINDS), set(KINDS) ^ set(a.seen)  # every kind was sent
