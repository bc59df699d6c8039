"""Ten thousand malformed commands at a running job: no crash, nothing applied, all answered."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from jobs import make_trainer, tiny_job

from optitui.store.commands import MAX_COMMAND_BYTES
from optitui.store.reader import RunReader

N = 10_000
R = random.Random(20261121)


def _num() -> Any:
    return R.choice([-1, -1e-9, -0.5, 1e400, -1e400, 2e19, "0.1", None, [], {}, True])


def _bad_set() -> dict[str, Any]:
    field, value = R.choice(
        [
            ("lr", _num()),
            ("momentum", -0.1),
            ("momentum", 2e19),
            ("weight_decay", -1),
            ("dampening", "x"),
            ("nesterov", 0.5),
            ("betas", [0.9, 0.99]),
            ("foreach", True),
            ("eps", 1e-8),
            ("params", 1),
            ("bogus_field", 1.0),
            ("lr", [0.1, 0.2]),
            ("1lr", 0.1),
            ("lr" * 40, 0.1),
            ("maximize", "yes"),
        ]
    )
    args: dict[str, Any] = {"values": {field: value}}
    if field == "eps":  # valid value, but SGD has no eps
        args["group"] = R.choice([None, 0])
    if R.random() < 0.3:
        args["group"] = R.choice([-1, 7, "tail", 1.5, [0], True, "x" * 200])
        args["values"] = {"lr": 0.1} if R.random() < 0.5 else args["values"]
    return {"kind": "set", "args": args}


GENERATORS: list[tuple[str, Callable[[], Any]]] = [
    ("garbage bytes", lambda: bytes(R.randrange(256) for _ in range(R.randrange(1, 200)))),
    ("not an object", lambda: json.dumps(R.choice([[1, 2], 3, "pause", None, True]))),
    ("unknown kind", lambda: {"kind": R.choice(["launch", "rm -rf", "", 7, None, "SET"])}),
    ("bad set", _bad_set),
    (
        "bad scale-lr",
        lambda: {"kind": "scale-lr", "args": {"factor": R.choice([0, -2, 1e400, "2", None, 1e30])}},
    ),
    ("bad step", lambda: {"kind": "step", "args": {"n": R.choice([0, -5, 1.5, 10**9, "3"])}}),
    ("extra keys", lambda: {"kind": "pause", "args": {}, "sudo": True}),
    ("unknown argument", lambda: {"kind": "stop", "args": {"force": True}}),
    ("args not an object", lambda: {"kind": "resume", "args": [1]}),
    ("oversized", lambda: {"kind": "pause", "pad": "x" * (MAX_COMMAND_BYTES + 1)}),
    (
        "bad swap",
        lambda: {
            "kind": "swap-optimizer",
            "args": {"name": R.choice(["os.system", "LBFGS", "Bogus", "", 3])},
        },
    ),
    (
        "bad restore",
        lambda: {"kind": "restore", "args": {"id": R.choice(["nope", "../../etc/passwd", 5])}},
    ),
    (
        "bad lr-find",
        lambda: {
            "kind": "lr-find",
            "args": R.choice(
                [{"start_lr": 1, "end_lr": 0.1}, {"num_iter": 1}, {"mode": "cubic"}, {"group": 9}]
            ),
        },
    ),
    (
        "nothing to apply",
        lambda: {"kind": "lr-find-apply", "args": {"id": "latest", "rule": "steep"}},
    ),
    ("nothing to cancel", lambda: {"kind": "lr-find-cancel", "args": {}}),
    ("no scheduler", lambda: {"kind": "scheduler", "args": {"action": "detach"}}),
    ("freeze everything", lambda: {"kind": "freeze", "args": {"group": None}}),
    ("bad clip", lambda: {"kind": "clip", "args": {"max_norm": R.choice([0, -1, "1", 1e400])}}),
    ("bad lookahead", lambda: {"kind": "lookahead", "args": {"enabled": True, "k": 0}}),
    ("bad policy", lambda: {"kind": "divergence", "args": {"action": "explode"}}),
    ("bad checkpoint policy", lambda: {"kind": "checkpoint-policy", "args": {"keep_last": -1}}),
    ("deep nesting", lambda: "[" * 100_000),
]


def _write(inbox: Path, name: str, body: bytes) -> None:
    tmp = inbox / f".{name}.tmp"
    tmp.write_bytes(body)
    os.rename(tmp, inbox / f"{name}.json")


@pytest.mark.slow
def test_ten_thousand_bad_commands(tmp_path: Path, run_in_thread: Any) -> None:
    trainer = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.05, "momentum": 0.9}), flush_every=16)
    running = run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    wait_for(lambda: reader.status().step > 5, what="training")
    before = trainer.group_snapshot()
    kinds: Counter[str] = Counter()
    names = []
    start = time.monotonic()
    for i in range(N):
        label, gen = GENERATORS[i % len(GENERATORS)]
        made = gen()
        name = f"fuzz{i:05d}"
        if isinstance(made, dict):
            made = json.dumps({"id": name, **made}).encode()
        elif isinstance(made, str):
            made = made.encode()
        _write(trainer.paths.inbox, name, made)
        kinds[label] += 1
        names.append(name)

    def answered() -> int:
        conn = sqlite3.connect(trainer.paths.db)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0])
        finally:
            conn.close()

    wait_for(lambda: answered() >= N, 120, "every command answered")
    took = time.monotonic() - start
    conn = sqlite3.connect(trainer.paths.db)
    rows = conn.execute("SELECT id, outcome, reason FROM commands").fetchall()
    conn.close()
    outcomes = Counter(o for _, o, _ in rows)
    ids = {i for i, _, _ in rows}
    print(
        f"\n{N} malformed commands in {len(kinds)} kinds, written and answered in {took:.1f} s: "
        f"{outcomes['rejected']} rejected, {outcomes['applied']} applied, "
        f"{sum(1 for _, _, r in rows if r)} with a reason; job alive: "
        f"{running.thread.is_alive()}, step {trainer.step}"
    )
    assert ids == set(names)  # every one answered, under its own name
    assert outcomes == Counter({"rejected": N})  # none applied
    assert all(r for _, _, r in rows)  # each with a reason
    assert running.thread.is_alive() and running.error is None  # no crash
    assert trainer.group_snapshot() == before  # no invalid value got in
    step = trainer.step
    wait_for(lambda: trainer.step > step, what="training on")
    from optitui.store import client

    sent = client.send(trainer.paths, "set", {"values": {"lr": 0.02}}, timeout=15).outcome
    assert sent is not None and sent.applied  # and it still listens


# -- files of every kind, under any name ---------------------------------------------------
def _name(rng: random.Random) -> bytes:
    """Any bytes a file name may hold (not / nor NUL), ending in .json."""
    n = rng.randrange(1, 100)
    raw = bytes(b for b in (rng.randrange(1, 256) for _ in range(n)) if b != 0x2F) or b"x"
    return raw + b".json"


def _contents(rng: random.Random) -> bytes:
    """Bytes no command is in: random, other encodings, a BOM, values out of range."""
    cmd = json.dumps({"kind": "set", "args": {"values": {"lr": 0.3}}})
    return rng.choice(
        [
            lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))),
            lambda: cmd.encode("utf-16"),
            lambda: cmd.encode("utf-32"),
            lambda: b"\xef\xbb\xbf" + cmd.encode(),  # a UTF-8 BOM: not JSON
            lambda: json.dumps({"kind": "set", "args": {"values": {"lr": "é"}}}).encode("latin-1"),
            lambda: '{"kind": "set", "args": {"values": {"lr": -0.3}}}'.encode("utf-16-le"),
            lambda: b'{"kind": "set", "args": {"values": {"lr": ' + b"7" * 5000 + b"}}}",
            lambda: b"",
        ]
    )()


KINDS = ("regular", "folder", "fifo", "link-file", "link-dir", "link-fifo", "dangling", "huge")
KINDS += ("sparse", "foreign")


@pytest.mark.slow
def test_file_level_fuzz(tmp_path: Path, run_in_thread: Any) -> None:
    """Entries of every kind under names in any bytes: each is answered exactly once, what
    is not a command file of ours is never opened nor removed, the job trains on and answers
    a normal `set lr` afterwards."""
    from optitui.store import client

    rng = random.Random(20261201)
    trainer = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.05, "momentum": 0.9}), flush_every=16)
    running = run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    wait_for(lambda: reader.status().step > 5, what="training")
    before = trainer.group_snapshot()
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.json"
    victim.write_text('{"kind": "stop"}')
    os.mkfifo(outside / "fifo")
    inbox = os.fsencode(trainer.paths.inbox)
    staging = os.fsencode(tmp_path / "staging")
    os.mkdir(staging)
    kept: list[bytes] = []  # entries that must stay where they are
    names: set[bytes] = set()
    while len(names) < 400:
        name = _name(rng)
        if name in names:
            continue
        names.add(name)
        kind = KINDS[len(names) % len(KINDS)]
        tmp = os.path.join(staging, b"entry")
        if kind == "folder":
            os.mkdir(tmp)
        elif kind == "fifo":
            os.mkfifo(tmp)
        elif kind.startswith("link") or kind == "dangling":
            to = {"link-file": victim, "link-dir": outside, "link-fifo": outside / "fifo"}
            os.symlink(to.get(kind, outside / "missing"), tmp)
        else:
            with open(tmp, "wb") as f:
                if kind == "huge":
                    f.write(b" " * (MAX_COMMAND_BYTES * 64))
                elif kind == "sparse":
                    f.truncate(10 * 2**30)
                else:
                    f.write(_contents(rng))
            if kind == "foreign" and os.geteuid() == 0:
                os.chown(tmp, 65534, 65534)
        os.rename(tmp, os.path.join(inbox, name))
        if kind not in ("regular", "huge", "sparse") and not (
            kind == "foreign" and os.geteuid() != 0
        ):
            kept.append(name)

    def answered() -> int:
        return int(reader.conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0])

    wait_for(lambda: answered() >= len(names), 120, "every entry answered")
    time.sleep(2.5)  # more polls: nothing is answered twice
    assert answered() == len(names)
    rows = reader.conn.execute("SELECT outcome, reason FROM commands").fetchall()
    assert all(o == "rejected" and r for o, r in rows)
    assert sorted(os.listdir(inbox)) == sorted(kept)  # only our own regular files went
    assert victim.read_text() == '{"kind": "stop"}'
    assert running.thread.is_alive() and running.error is None
    assert trainer.group_snapshot() == before
    sent = client.send(trainer.paths, "set", {"values": {"lr": 0.02}}, timeout=15).outcome
    assert sent is not None and sent.applied
    assert reader.status().state == "running"
