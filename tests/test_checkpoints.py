"""Checkpoints: bit-identical continuation, atomic writes under SIGKILL, clear errors."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from jobs import command, drive, make_trainer, tiny_job
from torch import nn
from torch.utils.data import DataLoader

from optitui.store.reader import RunReader
from optitui.trainer.control import commands as control
from optitui.trainer.core import checkpoint, state
from optitui.trainer.entry.headless import RunOptions, SetupFailed, prepare
from optitui.trainer.loop.trainer import Trainer

N, K = 50, 17


def params(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.model.parameters()]


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def _job(**kw: Any) -> Any:
    # 8 shuffled batches per epoch: N steps cross several epochs
    return tiny_job("AdamW", {"lr": 0.01}, **kw)


def _straight(tmp_path: Path, **kw: Any) -> list[torch.Tensor]:
    t = make_trainer(tmp_path, _job(**kw), name="straight")
    drive(t, N)
    return params(t)


def test_restore_continues_bit_identically(tmp_path: Path) -> None:
    want = _straight(tmp_path)
    t = make_trainer(tmp_path, _job(), name="rewound")
    drive(t, K, {})
    control.apply(t, command("save", tag="k"))
    assert t.saver is not None
    t.saver.wait()
    (m,) = checkpoint.listing(t.paths.checkpoints)
    assert (m.step, m.tag, m.reason) == (K, "k", "manual")
    # wander off: more steps and a changed lr, then rewind
    drive(t, 11, {K: [command("set", values={"lr": 0.5})]})
    control.apply(t, command("restore", id=m.id))
    assert t.step == K and t.optimizer.param_groups[0]["lr"] == 0.01
    drive(t, N - K)
    assert_same(params(t), want)
    t.saver.wait()
    reasons = sorted(x.reason for x in checkpoint.listing(t.paths.checkpoints))
    assert reasons == ["before-restore", "manual"]  # the undo point was saved


def test_in_memory_snapshot_with_global_rng_loader(tmp_path: Path) -> None:
    """A DataLoader with no generator of its own draws its order from torch's global RNG."""

    def job() -> Any:
        j = _job()
        j.train_data = DataLoader(j.train_data.dataset, batch_size=32, shuffle=True)
        return j

    torch.manual_seed(5)
    a = make_trainer(tmp_path, job(), name="a")
    drive(a, N)
    torch.manual_seed(5)
    b = make_trainer(tmp_path, job(), name="b")
    drive(b, K)
    snap = state.capture(b)
    drive(b, 13)
    torch.manual_seed(99)  # disturb the global RNG too
    state.restore(b, snap)
    drive(b, N - K)
    assert_same(params(b), params(a))


def test_periodic_saves_and_retention(tmp_path: Path) -> None:
    job = _job(checkpoint_every=5, keep_last=2, max_steps=31)
    t = make_trainer(tmp_path, job)
    assert t.run() == "finished"
    periodic = [m.step for m in checkpoint.listing(t.paths.checkpoints) if m.reason == "periodic"]
    assert periodic == [25, 30]
    with RunReader(t.paths.root) as r:
        saves = [e for e in r.events() if e.kind == "checkpoint"]
        assert len(saves) == 6 and all(e.data and e.data["marker"] == "save" for e in saves)


def test_best_and_manual_saves_leave_the_periodic_schedule_alone(tmp_path: Path) -> None:
    # validation every 4 steps improves on nearly every pass: each best save used to restart
    # the periodic count, so a save every 10 steps never came
    job = _job(
        val_data=[tiny_job().train_data.dataset[:64]],
        val_every=4,
        checkpoint_every=10,
        keep_last=10,
        max_steps=40,
    )
    t = make_trainer(tmp_path, job)
    assert t.run() == "finished"
    listed = checkpoint.listing(t.paths.checkpoints)
    assert any(m.reason == "best" for m in listed)
    assert [m.step for m in listed if m.reason == "periodic"] == [10, 20, 30, 40]


def test_best_by_validation(tmp_path: Path) -> None:
    job = _job(val_data=[tiny_job().train_data.dataset[:64]], val_every=10, max_steps=60)
    t = make_trainer(tmp_path, job)
    t.run()
    best = [m for m in checkpoint.listing(t.paths.checkpoints) if m.reason == "best"]
    assert len(best) == 1
    with RunReader(t.paths.root) as r:
        vals = [(s, v) for _, s, _, v in r.val()]
        saves = [e for e in r.events() if (e.data or {}).get("reason") == "best"]
    step, val = min(vals, key=lambda sv: sv[1])
    assert best[0].step == step and best[0].val_loss == pytest.approx(val)
    # each best save says the validation loss it was made at (a viewer shows the best's)
    assert saves and all(e.data and e.data["val"] == dict(vals)[e.step] for e in saves)


def test_policy_command(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, _job())
    drive(t, 2, {0: [command("checkpoint-policy", every=3, keep_last=1)]})
    t.run_until = None
    drive(t, 10)
    assert t.saver is not None
    t.saver.wait()
    assert [m.step for m in checkpoint.listing(t.paths.checkpoints)] == []  # drive() skips
    assert t.policy.every == 3 and t.policy.keep_last == 1 and t._ckpt_at == 3


# -- corrupt, foreign and mismatched files -------------------------------------------------
def _saved(tmp_path: Path) -> tuple[Trainer, checkpoint.Manifest]:
    t = make_trainer(tmp_path, _job(), name="src")
    drive(t, 5)
    t.save_checkpoint("manual")
    assert t.saver is not None
    t.saver.wait()
    return t, checkpoint.listing(t.paths.checkpoints)[0]


def _reject(t: Trainer, ref: str, needle: str) -> None:
    before = params(t)
    step = t.step
    with pytest.raises(control.Rejection, match=needle):
        control.apply(t, command("restore", id=ref))
    assert t.step == step
    assert_same(params(t), before)
    drive(t, 2)  # and the run goes on


def test_truncated_file(tmp_path: Path) -> None:
    t, m = _saved(tmp_path)
    path = t.paths.checkpoints / m.file
    path.write_bytes(path.read_bytes()[:-100])
    assert checkpoint.listing(t.paths.checkpoints) == []  # size no longer matches: unlisted
    with pytest.raises(checkpoint.CheckpointError, match="contents do not match"):
        checkpoint.load(path, m)
    with pytest.raises(checkpoint.CheckpointError, match="not a loadable checkpoint"):
        checkpoint.load(path)
    _reject(t, m.id, "is damaged: its state file is .* bytes, the manifest says")


def test_flipped_byte(tmp_path: Path) -> None:
    t, m = _saved(tmp_path)
    path = t.paths.checkpoints / m.file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    _reject(t, m.id, "damaged file")


class Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


def test_foreign_pickle_is_never_unpickled(tmp_path: Path) -> None:
    bad = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "version": 1, "x": Payload()}, bad)
    with pytest.raises(checkpoint.CheckpointError, match="refused: it holds Python objects"):
        checkpoint.load(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello")
    with pytest.raises(checkpoint.CheckpointError, match="not a loadable"):
        checkpoint.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(checkpoint.CheckpointError, match="not an optitui checkpoint"):
        checkpoint.load(other)


def test_other_model_and_optimizer(tmp_path: Path) -> None:
    src, m = _saved(tmp_path)
    snap = checkpoint.load(src.paths.checkpoints / m.file, m)
    wide = _job()
    wide.model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    wide.optimizer = torch.optim.AdamW(wide.model.parameters())
    t = make_trainer(tmp_path, wide, name="wide")
    with pytest.raises(checkpoint.CheckpointError, match=r"other model: 0.weight is \(\(16, 8\)"):
        checkpoint.check_compatible(t, snap)
    sgd = make_trainer(tmp_path, tiny_job("SGD"), name="sgd")
    with pytest.raises(checkpoint.CheckpointError, match="saved with optimizer AdamW"):
        checkpoint.check_compatible(sgd, snap)
    # through the command path, into a running trainer: refused, nothing changed
    sgd.paths.checkpoints.joinpath(m.file).write_bytes(
        (src.paths.checkpoints / m.file).read_bytes()
    )
    sgd.paths.checkpoints.joinpath(f"{m.id}.json").write_text(
        (src.paths.checkpoints / f"{m.id}.json").read_text()
    )
    drive(sgd, 1)
    _reject(sgd, m.id, "saved with optimizer AdamW")


def test_non_finite_state_is_never_written(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, _job(), name="nan")
    drive(t, 2)
    with torch.no_grad():
        next(t.model.parameters())[0, 0] = float("nan")
    t.save_checkpoint("manual")
    assert t.saver is not None
    t.saver.wait()
    assert checkpoint.listing(t.paths.checkpoints) == []
    assert not any(t.paths.checkpoints.iterdir())
    t.recorder.close()
    with RunReader(t.paths.root) as r:
        assert any("holds NaN or inf" in e.message for e in r.events())


def test_resume_from_a_run(tmp_path: Path, tiny_script: Path) -> None:
    straight = prepare(RunOptions(tiny_script, device="cpu", root=tmp_path, max_steps=40, seed=1))
    straight.run()
    first = prepare(RunOptions(tiny_script, device="cpu", root=tmp_path, max_steps=20, seed=1))
    first.policy.every = 20
    first.run()
    resumed = prepare(
        RunOptions(tiny_script, device="cpu", root=tmp_path, max_steps=40, resume=first.paths.root)
    )
    assert resumed.run() == "finished" and resumed.step == 40
    assert_same(params(resumed), params(straight))
    with RunReader(resumed.paths.root) as r:
        assert any("resumed from" in e.message for e in r.events())
    with pytest.raises(SetupFailed, match="no checkpoints"):
        prepare(RunOptions(tiny_script, device="cpu", root=tmp_path, resume=straight.paths.root))


# -- fault injection -------------------------------------------------------------------------
def _writer(folder: str, seed: int, ready: Any) -> None:
    """Save checkpoints forever; step s holds a weight tensor filled with s."""
    folder_path = Path(folder)
    step = seed * 1000
    ready.set()
    while True:
        step += 1
        snap = {
            "model": {"w": torch.full((512, 1024), float(step))},
            "optimizer": {},
            "optimizer_class": "SGD",
            "step": step,
            "epoch": 0,
        }
        checkpoint.write(folder_path, snap, checkpoint.new_id(step, "periodic"), reason="periodic")
        checkpoint.prune(folder_path, 3, True)


@pytest.mark.slow
def test_sigkill_while_saving(tmp_path: Path) -> None:
    # a fork server that imported torch but never ran an op: forking it is fast and safe
    # (forking this process, whose torch thread pools have run, can deadlock the child)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "optitui.trainer.core.checkpoint"])
    rnd = random.Random(0)
    trials, complete, leftovers = 50, 0, 0
    for trial in range(trials):
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        ready = ctx.Event()
        proc = ctx.Process(target=_writer, args=(str(folder), trial, ready))
        proc.start()
        assert ready.wait(60)
        time.sleep(rnd.uniform(0.0, 0.5))  # writes take ~0.1 s: kills land all over them
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        listed = checkpoint.listing(folder)
        for m in listed:  # every listed checkpoint loads, and holds exactly what was saved
            snap = checkpoint.load(folder / m.file, m)
            assert torch.equal(snap["model"]["w"], torch.full((512, 1024), float(m.step)))
        if listed:
            complete += 1
            steps = [m.step for m in listed]
            assert steps == sorted(steps) and len(steps) <= 4
        before = {p.name for p in folder.iterdir()}
        removed = checkpoint.cleanup(folder)
        leftovers += bool(removed)
        after = {p.name for p in folder.iterdir()}
        assert all(not n.endswith(".tmp") for n in after)
        assert {f"{m.id}.json" for m in listed} | {m.file for m in listed} == after
        assert before >= after
    print(
        f"\n{trials} kills: {complete} with complete checkpoints, "
        f"{leftovers} left partial files that cleanup removed"
    )
    assert complete >= trials // 2 and leftovers > 0


# -- the writer's footprint on training ------------------------------------------------------
def test_the_state_is_serialised_straight_into_its_file(tmp_path: Path) -> None:
    """No copy of the whole serialised state is held in memory on the way to the file,
    and the manifest's size and SHA-256 are those of the file written."""
    import hashlib
    import tracemalloc

    snap = {
        "model": {"w": torch.full((1024, 1024), 1.5)},  # 4 MB
        "optimizer": {},
        "optimizer_class": "SGD",
        "step": 3,
        "epoch": 0,
    }
    tracemalloc.start()
    try:
        m = checkpoint.write(tmp_path, snap, checkpoint.new_id(3, "manual"), reason="manual")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak} bytes held while writing a 4 MB state"
    data = (tmp_path / m.file).read_bytes()
    assert (m.size, m.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    loaded = checkpoint.load(tmp_path / m.file, m)
    assert torch.equal(loaded["model"]["w"], snap["model"]["w"])


def test_the_state_is_written_without_a_checksum_taken_under_the_gil(tmp_path: Path) -> None:
    """torch.save's CRC-32 of each record holds the GIL for the whole tensor (training
    stopped meanwhile) and torch.load never checks it: the writer leaves it out, the
    file stays a torch zip any torch.load reads, and torch's own setting is untouched."""
    import zipfile

    snap = {
        "model": {"w": torch.arange(4096, dtype=torch.float32)},
        "optimizer": {},
        "optimizer_class": "SGD",
        "step": 3,
        "epoch": 0,
    }
    m = checkpoint.write(tmp_path, snap, checkpoint.new_id(3, "manual"), reason="manual")
    with zipfile.ZipFile(tmp_path / m.file) as z:
        records = z.infolist()
    assert any(r.filename.endswith("/data/0") for r in records)
    assert all(r.CRC == 0 for r in records)
    assert torch.serialization.get_crc32_options()
    loaded = torch.load(tmp_path / m.file, weights_only=True)
    assert torch.equal(loaded["model"]["w"], snap["model"]["w"])
