"""Inbox entries that are not command files are answered once and left alone; a command
id is answered once, and its history never rewritten."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from conftest import wait_for
from jobs import make_trainer, tiny_job

from optitui.store import client
from optitui.store.commands import Rejected, send
from optitui.store.inbox_files import Inbox
from optitui.store.layout import create_run_dir
from optitui.store.reader import RunReader
from optitui.store.writer import StoreWriter


def _events_about(reader: RunReader, needle: str) -> list[str]:
    return [e.message for e in reader.events() if needle in e.message]


def test_a_folder_named_like_a_command_is_reported_once(tmp_path: Path, run_in_thread: Any) -> None:
    trainer = make_trainer(tmp_path, tiny_job(), flush_every=8)
    (trainer.paths.inbox / "x.json").mkdir()
    run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    wait_for(lambda: _events_about(reader, "a folder"), what="the refusal")
    time.sleep(2.5)  # two and more polls of the inbox later
    assert len(_events_about(reader, "a folder")) == 1
    assert (trainer.paths.inbox / "x.json").is_dir()  # never removed
    ok = client.send(trainer.paths, "set", {"values": {"lr": 0.02}}, timeout=15).outcome
    assert ok is not None and ok.applied


def test_entries_are_left_in_place_unless_they_are_our_command_files(tmp_path: Path) -> None:
    paths = create_run_dir(tmp_path, "x", tmp_path / "run")
    StoreWriter(paths, {}).close()
    inbox = paths.inbox
    target = tmp_path / "target.json"
    target.write_text('{"kind": "stop"}')
    (inbox / "a-dir.json").mkdir()
    (inbox / "b-link.json").symlink_to(target)
    os.mkfifo(inbox / "c-fifo.json")
    (inbox / "d-theirs.json").write_text('{"kind": "stop"}')
    if os.geteuid() == 0:
        os.chown(inbox / "d-theirs.json", 65534, 65534)
    mine = send(paths, "pause")
    taker = Inbox(paths)
    first = taker.take()
    refused = {r.id: r.reason for r in first if isinstance(r, Rejected)}
    assert "a folder" in refused["a-dir"] and "a symlink" in refused["b-link"]
    assert "a FIFO" in refused["c-fifo"]
    assert [c.id for c in first if not isinstance(c, Rejected)] == [mine]
    assert taker.take() == []  # answered once; from now on ignored
    left = sorted(p.name for p in inbox.iterdir())
    expected = ["a-dir.json", "b-link.json", "c-fifo.json"]
    expected += ["d-theirs.json"] if os.geteuid() == 0 else []
    assert left == expected and target.read_text() == '{"kind": "stop"}'


def test_a_reused_command_id_is_refused_and_history_kept(
    tmp_path: Path, run_in_thread: Any
) -> None:
    trainer = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.05}), flush_every=8)
    run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    wait_for(lambda: reader.status().step > 3, what="training")

    def drop(body: dict[str, Any]) -> None:
        tmp = trainer.paths.inbox / ".same.tmp"
        tmp.write_text(json.dumps(body))
        os.rename(tmp, trainer.paths.inbox / f"{time.time_ns()}.json")

    drop({"id": "same", "kind": "set", "args": {"values": {"lr": 0.03}}})
    wait_for(lambda: reader.outcome("same") is not None, what="the first answer")
    first = reader.outcome("same")
    assert first is not None and first.applied
    drop({"id": "same", "kind": "set", "args": {"values": {"lr": -1}}})
    wait_for(
        lambda: _events_about(reader, "'same' was used before"), what="the duplicate's refusal"
    )
    again = reader.outcome("same")
    assert again == first  # the applied answer stands, untouched
    assert trainer.optimizer.param_groups[0]["lr"] == 0.03
    refusals = reader.conn.execute(
        "SELECT id, outcome FROM commands WHERE reason LIKE '%was used before%'"
    ).fetchall()
    assert len(refusals) == 1 and refusals[0][1] == "rejected" and refusals[0][0] != "same"
