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
