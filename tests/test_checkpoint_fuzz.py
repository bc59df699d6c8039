"""A checkpoint of odd structure is refused before anything is touched.

Hundreds of structural mutations of a real checkpoint (keys deleted, values of
the wrong kind, tensors of the wrong shape, lists one too long or short) go
through the same check a restore and ``--resume`` make, in-process: every one
is refused with a reason, and the live state (parameters, optimizer, RNG) is
bit-identical afterwards. One file is then restored on a live run.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import random
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import wait_for
from jobs import command, drive, make_trainer, tiny_job

from optitui.store import client
from optitui.store.reader import RunReader
from optitui.trainer.control import commands as control
from optitui.trainer.core import checkpoint, snapshot_check, state
from optitui.trainer.entry.headless import RunOptions, SetupFailed, prepare
from optitui.trainer.loop.trainer import Trainer

Path_ = tuple[Any, ...]


def _trainer(tmp_path: Path, name: str = "fuzz") -> Trainer:
    job = tiny_job("AdamW", {"lr": 0.01})
    job.scheduler = torch.optim.lr_scheduler.StepLR(job.optimizer, step_size=5)
    t = make_trainer(tmp_path, job, name=name)
    drive(t, 3, {1: [command("lookahead", enabled=True, k=3), command("clip", max_norm=1.0)]})
    return t


def _paths(obj: Any, at: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield at, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*at, k))
    elif isinstance(obj, list | tuple) and len(obj) <= 32:  # not inside RNG state vectors
        for i, v in enumerate(obj):
            yield from _paths(v, (*at, i))


def _set(root: Any, at: Path_, value: Any) -> Any:
    """A copy of ``root`` with the value at ``at`` replaced (tuples rebuilt)."""
    if not at:
        return value
    head, rest = at[0], at[1:]
    if isinstance(root, dict):
        out = dict(root)
        out[head] = _set(root[head], rest, value)
        return out
    items = list(root)
    items[head] = _set(root[head], rest, value)
    return type(root)(items) if isinstance(root, tuple) else items


_DELETE = object()


def _delete(root: Any, at: Path_) -> Any:
    parent = root
    for k in at[:-1]:
        parent = parent[k]
    fixed = dict(parent)
    del fixed[at[-1]]
    return _set(root, at[:-1], fixed)


def _may_delete(at: Path_) -> bool:
    """Keys whose absence is a valid state: a parameter without optimizer state yet, a
    group without an lr base, the readonly switches torch fills in itself, what a
    checkpoint of an earlier version lacks."""
    return at not in snapshot_check.OPTIONAL and not (
        (at[:2] == ("optimizer", "state") and len(at) == 3)
        or at[:2] == ("lr_control", "base")
        or (
            len(at) == 4
            and at[:2] == ("optimizer", "param_groups")
            and at[3] in snapshot_check.FILLED_BY_TORCH
        )
    )


def mutations(snap: dict[str, Any], rng: random.Random) -> Iterator[tuple[str, Any]]:
    for at, value in _paths(snap):
        if not at or at[-1] in ("name", "format", "version"):
            continue  # a group's name may be any text; format/version are checked by load()
        label = ".".join(map(str, at))
        if isinstance(at[-1], str) and _may_delete(at):
            yield f"delete {label}", _delete(snap, at)
        if not isinstance(value, str):
            yield f"{label} = 'x'", _set(snap, at, "x")
        swap = [] if isinstance(value, dict) else {}
        yield f"{label} = {swap!r}", _set(snap, at, swap)
        if isinstance(value, torch.Tensor):
            shape = (7,) if tuple(value.shape) != (7,) else (3, 3)
            yield f"{label} shape {shape}", _set(snap, at, torch.zeros(shape, dtype=value.dtype))
        if isinstance(value, list | tuple) and value and at[:2] != ("optimizer", "state"):
            longer = [*value, value[-1]]
            yield f"{label} one longer", _set(snap, at, type(value)(longer))
            yield f"{label} one shorter", _set(snap, at, type(value)(list(value)[:-1]))


def _live(t: Trainer) -> Any:
    return (
        [p.detach().clone() for p in t.model.parameters()],
        copy.deepcopy(t.optimizer.state_dict()),
        torch.get_rng_state().clone(),
        random.getstate(),
        t.lr.scheduler.state_dict() if t.lr.scheduler is not None else None,
    )


def test_hundreds_of_mutated_checkpoints_are_refused_and_change_nothing(tmp_path: Path) -> None:
    from test_validation import same

    t = _trainer(tmp_path)
    snap = state.capture(t)
    checkpoint.check_compatible(t, snap)  # the real one passes
    before = _live(t)
    made = list(mutations(snap, random.Random(7)))
    accepted = []
    for label, bad in made:
        try:
            checkpoint.check_compatible(t, bad)
        except checkpoint.CheckpointError as exc:
            assert str(exc), label
            continue
        accepted.append(label)
    print(f"\n{len(made)} mutated checkpoints, {len(made) - len(accepted)} refused")
    assert len(made) >= 300
    assert accepted == [], accepted
    assert same(_live(t), before)  # nothing was touched, RNG included


def test_benign_changes_pass_and_restore(tmp_path: Path) -> None:
    t = _trainer(tmp_path)
    snap = state.capture(t)
    for ok in (
        _set(snap, ("clip",), None),
        _set(snap, ("lookahead",), None),
        _set(snap, ("step",), 2),
        _delete(snap, ("optimizer", "state", 0)),
    ):
        checkpoint.check_compatible(t, ok)
        state.restore(t, ok)
        drive(t, 2)  # the next steps use it


def test_every_snapshot_key_has_a_rule(tmp_path: Path) -> None:
    """A key added to state.capture must get its check in snapshot_check (and this test
    fails until it does)."""
    t = _trainer(tmp_path)
    snap = state.capture(t)
    assert set(snap) == snapshot_check.TOP_KEYS
    assert set(snap["lr_control"]) == snapshot_check.LR_CONTROL_KEYS
    assert set(snap["lookahead"]) == snapshot_check.LOOKAHEAD_KEYS
    assert set(snap["data"]) == snapshot_check.DATA_KEYS
    assert set(snap["rng"]) == snapshot_check.RNG_KEYS


def _plant(t: Trainer, snap: dict[str, Any], cid: str = "step00000003-manual-beef") -> str:
    """A checkpoint file with a valid manifest and SHA-256 holding ``snap``."""
    buf = io.BytesIO()
    torch.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, **snap}, buf)
    data = buf.getvalue()
    folder = t.paths.checkpoints
    (folder / f"{cid}.pt").write_bytes(data)
    m = checkpoint.Manifest(
        id=cid,
        step=3,
        epoch=0,
        loss=None,
        val_loss=None,
        time=1.0,
        reason="manual",
        tag=None,
        file=f"{cid}.pt",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        optimizer="AdamW",
    )
    (folder / f"{cid}.json").write_text(json.dumps(asdict(m)))
    return cid


def test_restore_of_an_odd_checkpoint_leaves_the_live_run_unchanged(
    tmp_path: Path, run_in_thread: Any
) -> None:
    from test_validation import same

    source = make_trainer(tmp_path, tiny_job("AdamW", {"lr": 0.01}), name="source")
    drive(source, 3)
    snap = state.capture(source)
    t = make_trainer(tmp_path, tiny_job("AdamW", {"lr": 0.01}), flush_every=8)
    cid = _plant(t, _set(snap, ("optimizer",), [1, 2]))  # the reported repro
    running = run_in_thread(t)
    reader = RunReader(t.paths.root)
    wait_for(lambda: reader.status().step > 5, what="training")
    assert client.send(t.paths, "pause").outcome.applied  # type: ignore[union-attr]
    before = _live(t)
    out = client.send(t.paths, "restore", {"id": cid}, timeout=15).outcome
    assert out is not None and not out.applied and out.reason is not None
    assert "optimizer" in out.reason and "not a dict" in out.reason
    assert same(_live(t), before)
    assert client.send(t.paths, "resume").outcome.applied  # type: ignore[union-attr]
    step = reader.status().step
    wait_for(lambda: reader.status().step > step + 5, what="training on")
    assert running.thread.is_alive() and running.error is None


def test_resume_from_an_odd_checkpoint_is_refused_before_a_run_dir_exists(
    tmp_path: Path, tiny_script: Path
) -> None:
    t = _trainer(tmp_path, "source")
    snap = state.capture(t)
    root = tmp_path / "runs"
    for bad, needle in (
        (_set(snap, ("step",), "12"), "step"),
        (_delete(snap, ("epoch",)), "lacks epoch"),
    ):
        cid = _plant(t, bad)
        with pytest.raises(SetupFailed, match=needle):
            prepare(
                RunOptions(
                    tiny_script, device="cpu", root=root, resume=t.paths.checkpoints / f"{cid}.pt"
                )
            )
        assert not root.exists() or not any(root.iterdir())


class Payload:
    """Any class: a pickle that would import and build it is not weights."""


def test_truncated_unlisted_and_pickled_files_are_refused_with_their_reason(
    tmp_path: Path, tiny_script: Path
) -> None:
    t = _trainer(tmp_path)
    control.apply(t, command("save", tag="k"))
    assert t.saver is not None
    t.saver.wait()
    (m,) = checkpoint.listing(t.paths.checkpoints)
    state_file = t.paths.checkpoints / m.file
    data = state_file.read_bytes()
    state_file.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(control.Rejection, match=f"checkpoint {m.id} is damaged: .*truncated"):
        control.apply(t, command("restore", id=m.id))
    # a .pt with no manifest beside it is never loaded, not even by --resume
    loose = tmp_path / "loose.pt"
    loose.write_bytes(data)
    with pytest.raises(SetupFailed, match="no manifest"):
        prepare(RunOptions(tiny_script, device="cpu", root=tmp_path / "r", resume=loose))

    # a pickle of code: optitui's reason, never torch's advice to load it unsafely
    buf = io.BytesIO()
    torch.save({"format": checkpoint.FORMAT, "version": 1, "x": Payload()}, buf)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(buf.getvalue())
    with pytest.raises(checkpoint.CheckpointError) as caught:
        checkpoint.load(evil)
    msg = str(caught.value)
    assert "weights_only=True" in msg and "Payload" in msg
    assert "weights_only=False" not in msg and "trust" not in msg
