"""Small values that were taken wrongly: each is refused where it enters, with its reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_SCRIPT, wait_for, write_script
from jobs import command, make_trainer, tiny_job

from optitui.cli import main
from optitui.store import client
from optitui.store.commands import CommandError
from optitui.store.reader import RunReader
from optitui.store.words import parse_send
from optitui.trainer.control import commands as control
from optitui.trainer.core.job import JobError
from optitui.trainer.entry.headless import RunOptions, SetupFailed, prepare


def test_a_group_in_other_digits_is_a_name_not_a_crash(tmp_path: Path) -> None:
    assert parse_send("set", ["lr=0.1"], "²") == ("set", {"group": "²", "values": {"lr": 0.1}})
    assert parse_send("set", ["lr=0.1"], "1")[1]["group"] == 1
    trainer = make_trainer(tmp_path, tiny_job())
    with pytest.raises(control.Rejection, match="no group named '²'"):
        control.apply(trainer, command("set", values={"lr": 0.1}, group="²"))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1_0", "not a number"),
        ("1e-400", "too small for a float64: it would become 0"),
        ("1e400", "out of range"),
        ("0.1,", "empty element"),
        ("nan", "not a number"),
        ("inf", "not a number"),
        ("１", "not a number"),  # a fullwidth digit: Python's int() takes it
        ("0x10", "not a number"),
    ],
)
def test_numbers_are_written_the_plain_way(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_send("set", [f"lr={text}"], None)


def test_a_value_of_the_wrong_shape_is_refused_at_send(
    tmp_path: Path, run_in_thread: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer = make_trainer(tmp_path, tiny_job("SGD", {"momentum": 0.9}), flush_every=8)
    run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    wait_for(lambda: reader.status().step > 3, what="training")
    answered = reader.conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0]
    with pytest.raises(CommandError, match=r"group body: lr: got \(0\.1\)"):
        client.send(trainer.paths, "set", {"values": {"lr": [0.1]}})
    assert main(["send", str(trainer.paths.root), "set", "momentum=0.9,0.99"]) == 2
    err = capsys.readouterr().err
    assert "momentum: got (0.9, 0.99); allowed: a finite number" in err
    assert not list(trainer.paths.inbox.iterdir())  # nothing was sent
    assert reader.conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0] == answered
    # a value of the right shape out of bounds is still the job's to refuse (exit 1)
    assert main(["send", str(trainer.paths.root), "set", "momentum=-1"]) == 1


EMPTY = TINY_SCRIPT.replace(
    "train_data=DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=g)",
    "train_data=TRAIN",
).replace(", STEP_DELAY", "")


def test_empty_train_data_is_a_setup_error(tmp_path: Path) -> None:
    sized = write_script(tmp_path, EMPTY.replace("TRAIN", "[]"), "sized.py")
    with pytest.raises(SetupFailed, match="train_data is empty"):
        prepare(RunOptions(sized, device="cpu", root=tmp_path / "runs"))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    # an iterable that cannot say its length: found at the first batch, the run fails
    unsized = write_script(tmp_path, EMPTY.replace("TRAIN", "(b for b in [])"), "unsized.py")
    trainer = prepare(RunOptions(unsized, device="cpu", root=tmp_path / "runs"))
    with pytest.raises(JobError, match="yielded no batches"):
        trainer.run()
    with RunReader(trainer.paths.root) as r:
        assert r.status().state == "failed"
    out = subprocess.run(
        [sys.executable, "-m", "optitui", "run", str(sized), "--headless"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "train_data is empty" in lines[0]


def test_swap_values_are_checked_against_the_new_class(tmp_path: Path) -> None:
    """The reported cases: a third beta and a third eta built optimizers that failed at
    their first step; lr=true made a bool lr that later `set lr` edits refused."""
    from jobs import drive

    trainer = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.05}))
    drive(trainer, 2)
    before = trainer.optimizer
    for name, values, field in (
        ("Adam", {"betas": (0.9, 0.99, 0.5)}, "betas"),
        ("Rprop", {"etas": (0.5, 1.2, 9.0)}, "etas"),
        ("Adam", {"lr": True}, "lr"),
    ):
        with pytest.raises(control.Rejection, match=field):
            control.apply(trainer, command("swap-optimizer", name=name, values=values))
        assert trainer.optimizer is before
    control.apply(trainer, command("swap-optimizer", name="Adam", values={"lr": 0.02}))
    control.apply(trainer, command("set", values={"lr": 0.01}))  # a number, editable
    assert all(g["lr"] == 0.01 for g in trainer.optimizer.param_groups)
    drive(trainer, 2)
