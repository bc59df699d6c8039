"""No single file or fault makes a job deaf or unrecorded: every background thread is
supervised, and a bad input costs one refusal."""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, wait_for
from jobs import make_trainer, tiny_job

from optitui.store import client
from optitui.store.reader import RunReader
from optitui.store.records import Event
from optitui.store.supervise import SupervisedThread
from optitui.store.writer import StoreWriter
from optitui.trainer.core import checkpoint
from optitui.trainer.loop.trainer import Trainer


def _live(tmp_path: Path, run_in_thread: Any, **kw: Any) -> tuple[Trainer, Any, RunReader]:
    trainer = make_trainer(
        tmp_path, tiny_job("SGD", {"lr": 0.05, "momentum": 0.9}, **kw), flush_every=8
    )
    running = run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    wait_for(lambda: reader.status().step > 3, what="training")
    return trainer, running, reader


def _drop(trainer: Trainer, name: bytes, body: bytes) -> None:
    """A file in the inbox under any name, written the way senders write (rename)."""
    folder = os.fsencode(trainer.paths.inbox)
    tmp = os.path.join(folder, b".drop.tmp")
    with open(tmp, "wb") as f:
        f.write(body)
    os.rename(tmp, os.path.join(folder, name))


def _answers_set_lr(trainer: Trainer, lr: float = 0.02) -> None:
    sent = client.send(trainer.paths, "set", {"values": {"lr": lr}, "group": 0}, timeout=15)
    assert sent.outcome is not None and sent.outcome.applied, sent.outcome
    wait_for(lambda: trainer.optimizer.param_groups[0]["lr"] == lr, what="the new lr")


def _outcomes(reader: RunReader) -> dict[str, tuple[str, str | None, str]]:
    rows = reader.conn.execute("SELECT id, outcome, reason, payload FROM commands").fetchall()
    return {i: (o, r, p) for i, o, r, p in rows}


def _errors(reader: RunReader) -> list[str]:
    return [e.message for e in reader.events() if e.kind == "error"]


def test_a_five_thousand_digit_number_costs_one_refusal(tmp_path: Path, run_in_thread: Any) -> None:
    trainer, running, reader = _live(tmp_path, run_in_thread)
    big = "1" * 5000
    body = f'{{"id": "huge-number", "kind": "set", "args": {{"values": {{"lr": {big}}}}}}}'
    _drop(trainer, b"huge-number.json", body.encode())
    wait_for(lambda: "huge-number" in _outcomes(reader), what="the refusal")
    outcome, reason, _ = _outcomes(reader)["huge-number"]
    assert outcome == "rejected" and reason is not None and "digits" in reason
    _answers_set_lr(trainer)  # still listening
    assert running.thread.is_alive() and running.error is None


def test_an_undecodable_file_name_is_refused_and_recording_goes_on(
    tmp_path: Path, run_in_thread: Any
) -> None:
    trainer, running, reader = _live(tmp_path, run_in_thread)
    _drop(trainer, b"\xff\xfe.json", b"not json")
    wait_for(
        lambda: any(p == "\\xff\\xfe.json" for _, _, p in _outcomes(reader).values()),
        what="the refusal, named with its bytes escaped",
    )
    _answers_set_lr(trainer)
    assert reader.status().state == "running"
    step = reader.status().step
    wait_for(lambda: reader.status().step > step + 20, what="steps recorded after it")
    running.stop()
    assert running.result == "stopped"
    steps = list(reader.read_metrics().columns["step"])
    assert steps == [float(s) for s in range(1, trainer.step + 1)]  # nothing lost
    assert reader.status().state == "stopped"


# -- each thread, with a fault injected ------------------------------------------------------
def _once(real: Callable[..., Any], exc: Exception) -> Callable[..., Any]:
    calls = {"n": 0}

    def fake(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise exc
        return real(*args, **kwargs)

    return fake


def test_command_thread_fault_is_recorded_and_it_goes_on(
    tmp_path: Path, run_in_thread: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer, running, reader = _live(tmp_path, run_in_thread)
    inbox = trainer.pump.inbox  # type: ignore[union-attr]
    monkeypatch.setattr(inbox, "take", _once(inbox.take, RuntimeError("injected intake fault")))
    _answers_set_lr(trainer)  # the fault hit the first look; the command is answered
    errors = _errors(reader)
    assert any("optitui-commands thread: RuntimeError: injected intake fault" in m for m in errors)
    assert running.thread.is_alive()


def test_store_writer_drops_one_bad_record_and_survives_a_fault(
    tmp_path: Path, run_in_thread: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = StoreWriter._write_one

    def poisoned(self: StoreWriter, r: Any) -> None:
        if isinstance(r, Event) and r.message == "poison":
            raise RuntimeError("this record cannot be stored")
        real(self, r)

    monkeypatch.setattr(StoreWriter, "_write_one", poisoned)
    trainer, running, reader = _live(tmp_path, run_in_thread)
    trainer.recorder.put(Event(0, "info", "before"))
    trainer.recorder.put(Event(0, "info", "poison"))
    trainer.recorder.put(Event(0, "info", "after"))
    wait_for(lambda: "after" in [e.message for e in reader.events()], what="the good records")
    messages = [e.message for e in reader.events()]
    assert "before" in messages and "poison" not in messages
    assert any("could not be stored and was dropped" in m for m in _errors(reader))
    # a fault outside any record: recorded, and the thread goes on
    recorder = trainer.recorder
    monkeypatch.setattr(recorder, "_drain", _once(recorder._drain, RuntimeError("injected fault")))
    wait_for(
        lambda: any("optitui-store-writer thread" in m for m in _errors(reader)),
        what="the fault on record",
    )
    _answers_set_lr(trainer)
    step = reader.status().step
    wait_for(lambda: reader.status().step > step, what="steps recorded after the fault")
    assert running.thread.is_alive()


def test_checkpoint_writer_survives_a_failing_save(
    tmp_path: Path, run_in_thread: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        checkpoint, "write", _once(checkpoint.write, RuntimeError("injected write fault"))
    )
    trainer, running, reader = _live(tmp_path, run_in_thread)
    first = client.send(trainer.paths, "save", {"tag": "first"}, timeout=15).outcome
    saver = trainer.saver
    assert saver is not None
    monkeypatch.setattr(saver, "_write", _once(saver._write, RuntimeError("injected body fault")))
    second = client.send(trainer.paths, "save", {"tag": "second"}, timeout=15).outcome
    third = client.send(trainer.paths, "save", {"tag": "third"}, timeout=15).outcome
    # every save answered: the two that failed with their reason, the third applied
    assert first is not None and not first.applied and "injected write fault" in str(first.reason)
    assert second is not None and not second.applied and "injected body fault" in str(second.reason)
    assert third is not None and third.applied
    assert [m.tag for m in checkpoint.listing(trainer.paths.checkpoints)] == ["third"]
    warnings = [e.message for e in reader.events() if e.kind == "warning"]
    assert any("injected write fault" in m for m in warnings)
    faults = _errors(reader)
    assert any("optitui-checkpoints thread: RuntimeError: injected body fault" in m for m in faults)
    assert running.thread.is_alive()


def test_machine_sampler_fault_is_recorded_and_sampling_goes_on(
    tmp_path: Path, run_in_thread: Any
) -> None:
    from optitui.store import system

    trainer = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.05}), flush_every=8)
    sampler = trainer.machine.sampler
    sampler.interval, sampler.batch = 0.05, 1
    sampler.sample = _once(sampler.sample, RuntimeError("injected sampler fault"))  # type: ignore[method-assign]
    running = run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    wait_for(
        lambda: any("optitui-machine thread" in m for m in _errors(reader)),
        what="the fault on record",
    )
    assert any("injected sampler fault" in m for m in _errors(reader))
    wait_for(lambda: system.read(reader.conn).ranks.get(0) is not None, what="samples after it")
    assert running.thread.is_alive() and reader.status().state == "running"


def test_a_thread_that_keeps_failing_fails_the_run_loudly(
    tmp_path: Path, run_in_thread: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer, running, reader = _live(tmp_path, run_in_thread)
    trainer.supervisor.restarts, trainer.supervisor.backoff = 2, 0.01

    def broken() -> Any:
        raise RuntimeError("the inbox cannot be read")

    monkeypatch.setattr(trainer.pump.inbox, "take", broken)  # type: ignore[union-attr]
    trainer.pump._wake.set()  # type: ignore[union-attr]
    running.thread.join(30)
    assert running.result is None and running.error is not None  # the run raised
    st = reader.status()
    assert st.state == "failed" and st.message is not None
    assert "optitui-commands thread" in st.message and "the inbox cannot be read" in st.message


def test_every_job_thread_is_supervised(tmp_path: Path, run_in_thread: Any) -> None:
    import threading

    _live(tmp_path, run_in_thread)
    ours = [t for t in threading.enumerate() if t.name.startswith("optitui-")]
    names = {t.name for t in ours}
    assert {
        "optitui-commands",
        "optitui-store-writer",
        "optitui-checkpoints",
        "optitui-machine",
    } <= names
    assert all(isinstance(t, SupervisedThread) for t in ours), [
        t.name for t in ours if not isinstance(t, SupervisedThread)
    ]


#: the packages whose code runs in a job's process
JOB_PACKAGES = ("trainer", "store", "integrations", "console", "lrfind")


def test_no_job_code_starts_an_unsupervised_thread() -> None:
    """Threads in the job's packages come from the Supervisor only (viewers, which run no
    job, use Textual workers and threads of their own)."""
    offenders = []
    for package in JOB_PACKAGES:
        for path in sorted((REPO / "optitui" / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel == "optitui/store/supervise.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call):
                    f = node.func
                    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                    if name in ("Thread", "start_new_thread", "Timer"):
                        offenders.append(f"{rel}:{node.lineno}")
    assert offenders == [], offenders


def test_parse_refuses_numbers_python_cannot_take() -> None:
    from optitui.store.commands import CommandError, parse

    for bad, why in (
        (b'{"kind": "set", "args": {"values": {"lr": ' + b"9" * 5000 + b"}}}", "digits"),
        (b'{"kind": "set", "args": {"values": {"lr": 1e-400}}}', "too small"),
        (b'{"kind": "set", "args": {"values": {"lr": 1e400}}}', "out of range"),
    ):
        with pytest.raises(CommandError, match=why):
            parse(bad, "x")
    assert json.loads("0.0") == 0.0 and parse(
        b'{"kind": "set", "args": {"values": {"lr": 0.0}}}', "x"
    ).args["values"] == {"lr": 0.0}
