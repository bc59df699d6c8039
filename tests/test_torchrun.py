"""torch.distributed paths that only go wrong on real clusters, checked in one process.

A one-rank gloo process group stands in for torchrun's: DDP's all-reduces are
counted with a comm hook, and what a rank would do with its peers is checked
from the calls it makes (devices, order of collectives, per-rank RNG states).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as torch_dist
from jobs import make_trainer, regression_data, tiny_job
from torch.utils.data import DataLoader

from optitui.trainer.core import dist
from optitui.trainer.core.dist import DistInfo


@pytest.fixture
def group() -> Iterator[None]:
    """A one-rank gloo process group for the test's duration."""
    torch_dist.init_process_group("gloo", store=torch_dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        torch_dist.destroy_process_group()


def _info(rank: int = 0, world: int = 2) -> DistInfo:
    return DistInfo(rank=rank, world=world, local_rank=rank, backend="gloo")


def test_gradient_accumulation_all_reduces_once_per_step(tmp_path: Path, group: None) -> None:
    t = make_trainer(tmp_path, tiny_job(grad_accum=4), dist_info=_info())
    assert isinstance(t.net, torch.nn.parallel.DistributedDataParallel)
    calls = [0]

    def count(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks the annotations
        calls[0] += 1
        fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()
        fut.set_result(bucket.buffer())
        return fut

    t.net.register_comm_hook(None, count)
    t._start()
    for _ in range(6):
        t._train_step()
        t.step += 1
    assert calls[0] == 6  # one bucket, all-reduced on the last micro-batch of each step
    t.recorder.close()


def test_sharding_keeps_every_dataloader_argument() -> None:
    gen = torch.Generator().manual_seed(3)
    ctx = multiprocessing.get_context("spawn")
    loader = DataLoader(
        regression_data(64),
        batch_size=8,
        shuffle=True,
        generator=gen,
        num_workers=1,
        multiprocessing_context=ctx,
        prefetch_factor=5,
        persistent_workers=True,
        pin_memory=False,
        pin_memory_device="",
        in_order=False,
        timeout=7.0,
        drop_last=True,
    )
    out = dist.shard(loader, _info())
    assert out is not loader and isinstance(out.sampler, torch.utils.data.DistributedSampler)
    assert out.generator is gen
    assert out.multiprocessing_context is ctx
    assert out.prefetch_factor == 5
    assert out.persistent_workers and out.timeout == 7.0 and out.drop_last
    assert out.in_order is False
    assert out.pin_memory_device == ""


def test_sharding_a_single_process_loader_passes_no_worker_options() -> None:
    loader = DataLoader(regression_data(64), batch_size=8, shuffle=True)
    out = dist.shard(loader, _info())  # prefetch_factor stays None: no ValueError
    assert out.prefetch_factor is None and out.num_workers == 0
    assert len(list(out)) == 4


# -- 11: out of memory on one rank ends the run on every rank ----------------------------------
def test_out_of_memory_under_torchrun_fails_the_run_instead_of_pausing_one_rank(
    tmp_path: Path, group: None, run_in_thread: Any
) -> None:
    from optitui.store.reader import RunReader

    job = tiny_job()
    calls = [0]

    def step_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        x, y = batch
        return torch.nn.functional.mse_loss(model(x), y)

    job.loss_fn, job.step_fn = None, step_fn
    t = make_trainer(tmp_path, job, dist_info=_info())
    running = run_in_thread(t)
    # a rank that paused alone would wait at the next meeting while its peers wait in
    # DDP's all-reduce of the step it dropped: the run must end instead
    running.thread.join(30)
    assert not running.thread.is_alive(), "the rank paused alone"
    assert running.error is not None and "out of memory on rank 0 at step 3" in str(running.error)
    with RunReader(t.paths.root) as r:
        st = r.status()
        assert st.state == "failed" and st.message and "the run ends on every rank" in st.message


# -- 12: rank 0 never makes the others wait on its disk inside a meeting -------------------------
def _saved(t: Any) -> str:
    from optitui.trainer.core import checkpoint

    assert t.saver is not None
    t.save_checkpoint("manual")
    t.saver.wait()
    return checkpoint.listing(t.paths.checkpoints)[-1].id


def test_a_restore_waits_for_a_meeting_when_no_checkpoint_is_being_written(
    tmp_path: Path, group: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs import command

    t = make_trainer(tmp_path, tiny_job(), dist_info=_info())
    t._start()
    cid = _saved(t)
    assert t.saver is not None
    monkeypatch.setattr(t.saver, "busy", lambda: True, raising=False)

    def waited() -> None:
        raise AssertionError("rank 0 waited for the checkpoint writer inside a meeting")

    monkeypatch.setattr(t.saver, "wait", waited)
    lr = t.optimizer.param_groups[0]["lr"]
    before, restore, after = (
        command("scale-lr", factor=0.5),
        command("restore", id=cid),
        command("scale-lr", factor=0.5),
    )
    t.commands.extend([before, restore, after])
    t._sync()
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(lr * 0.5)
    assert list(t.commands) == [restore, after]  # in order, for a later meeting
    monkeypatch.setattr(t.saver, "busy", lambda: False, raising=False)
    monkeypatch.undo()
    t._sync()
    assert not t.commands
    t.recorder.close()


def test_a_rollback_reads_checkpoints_only_after_rank_0_named_them(
    tmp_path: Path, group: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optitui.trainer.core import checkpoint

    t = make_trainer(tmp_path, tiny_job(on_divergence="rollback"), dist_info=_info())
    t._start()
    for _ in range(2):
        t._train_step()
        t.step += 1
    cid = _saved(t)
    order: list[str] = []
    real_broadcast, real_load = dist.broadcast_object, checkpoint.load

    def broadcast(obj: Any, device: torch.device) -> Any:
        order.append("meet")
        return real_broadcast(obj, device)

    def load(*a: Any, **k: Any) -> Any:
        order.append("read")
        return real_load(*a, **k)

    monkeypatch.setattr(dist, "broadcast_object", broadcast)
    monkeypatch.setattr(checkpoint, "load", load)
    found = t.guard._last_good(before=t.step + 5)
    assert found is not None and found[1] == cid
    assert order[0] == "meet" and "read" in order  # every rank reads it, after the meeting
    t.recorder.close()


# -- 13: each rank's own RNG states --------------------------------------------------------------
def _rng_snap(t: Any, by_rank: dict[int, Any] | None) -> dict[str, Any]:
    from optitui.trainer.core import state

    snap = state.capture(t)
    snap.pop("rng_by_rank", None)
    if by_rank is not None:
        snap["rng_by_rank"] = by_rank
    return snap


def _states(seed: int) -> dict[str, Any]:
    from optitui.trainer.core import state

    torch.manual_seed(seed)
    return state.rng_state([])


def test_each_rank_restores_its_own_rng_states(tmp_path: Path, group: None) -> None:
    from optitui.trainer.core import state

    t = make_trainer(tmp_path, tiny_job(), dist_info=_info(rank=1))
    rank0, rank1 = _states(100), _states(101)
    snap = _rng_snap(t, {0: rank0, 1: rank1})
    snap["rng"] = rank0  # what rank 0 wrote as its own
    torch.manual_seed(7)
    state.restore(t, snap)
    assert torch.equal(torch.get_rng_state(), rank1["torch"])  # rank 1's, not rank 0's


def test_a_rank_keeps_its_rng_when_the_checkpoint_has_rank_0s_only(
    tmp_path: Path, group: None
) -> None:
    from optitui.trainer.core import state

    t = make_trainer(tmp_path, tiny_job(), dist_info=_info(rank=1))
    snap = _rng_snap(t, None)
    snap["rng"] = _states(100)  # a periodic checkpoint: rank 0 alone saved it
    torch.manual_seed(7)
    mine = torch.get_rng_state()
    state.restore(t, snap)
    assert torch.equal(torch.get_rng_state(), mine)


def test_a_resume_on_fewer_gpus_restores_the_devices_that_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from optitui.trainer.core import state

    set_on: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, d=0: set_on.append(int(d)))

    def all_devices(states: list[torch.Tensor]) -> None:  # as torch's: device 1 is not there
        for i, _ in enumerate(states):
            if i >= 1:
                raise IndexError("tuple index out of range")
            set_on.append(i)

    monkeypatch.setattr(torch.cuda, "set_rng_state_all", all_devices)
    saved = state.rng_state([])
    saved["cuda"] = [torch.zeros(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)]
    note = state.set_rng_state(saved, [])
    assert set_on == [0]
    assert note is not None and "saved for 2 device(s), this process sees 1" in note


def _rng_rank(rank: int, store: str, run_dir: str, out: Any) -> None:
    """One of two gloo ranks: save together, move the RNG on, restore from the file."""
    import torch.distributed as torch_dist
    from jobs import tiny_job

    from optitui.store.layout import RunPaths, create_run_dir
    from optitui.trainer.core import checkpoint, state
    from optitui.trainer.loop.trainer import Trainer

    torch_dist.init_process_group(
        "gloo", store=torch_dist.FileStore(store, 2), rank=rank, world_size=2
    )
    try:
        paths = create_run_dir(Path(run_dir).parent, "r", run_dir) if rank == 0 else None
        torch_dist.barrier()
        t = Trainer(tiny_job(), torch.device("cpu"), paths or RunPaths(Path(run_dir)),
                    dist_info=DistInfo(rank, 2, rank, "gloo"))  # fmt: skip
        t._start()
        torch.manual_seed(100 + rank)  # each rank's own stream (dropout masks differ)
        t.save_checkpoint("manual", every_rank=True)  # a `save` command: every rank, one step
        mine = torch.get_rng_state().clone()
        if t.saver is not None:
            t.saver.wait()
        torch_dist.barrier()
        torch.rand(100)  # training goes on
        m = checkpoint.listing(t.paths.checkpoints)[-1]
        snap = checkpoint.load(t.paths.checkpoints / m.file, m)
        state.restore(t, snap)
        out.put((rank, sorted(snap["rng_by_rank"]), torch.equal(torch.get_rng_state(), mine)))
        t.recorder.close()
    finally:
        torch_dist.destroy_process_group()


def test_a_checkpoint_saved_by_every_rank_restores_each_ranks_rng(tmp_path: Path) -> None:
    # spawned, not forked: a fork of this process (threads of earlier tests, gloo's own)
    # can deadlock in the child
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_rng_rank, args=(r, str(tmp_path / "store"), str(tmp_path / "r"), out))
        for r in (0, 1)
    ]
    for p in procs:
        p.start()
    got = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
    assert got == [(0, [0, 1], True), (1, [0, 1], True)]


# -- 16: FSDP: no whole-state copies, refused with the reason ------------------------------------
def _fsdp2_job(**kw: Any) -> Any:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    job = tiny_job(**kw)
    fully_shard(job.model, mesh=init_device_mesh("cpu", (1,)))  # FSDP2 runs on gloo too
    # the optimizer must hold the sharded parameters (as in any FSDP2 script)
    job.optimizer = torch.optim.SGD(job.model.parameters(), lr=0.01)
    return job


def test_fsdp_is_detected_and_not_wrapped_in_ddp(tmp_path: Path, group: None) -> None:
    t = make_trainer(tmp_path, _fsdp2_job(), dist_info=_info())
    assert t.sharded == "FSDP2 (fully_shard)"
    assert t.net is t.model  # no DistributedDataParallel around a sharded model
    t._start()
    for _ in range(3):
        t._train_step()
        t.step += 1
    t.recorder.close()


def test_health_under_fsdp_measures_the_ranks_shard(tmp_path: Path, group: None) -> None:
    from optitui.trainer.core.health import Health

    job = _fsdp2_job()
    opt = job.optimizer
    x = torch.randn(8, 8)
    job.model(x).sum().backward()
    local = [p.to_local().detach().clone() for p in job.model.parameters()]
    grads = [p.grad.to_local().clone() for p in job.model.parameters()]
    health = Health(1)
    health.arm(0, opt)
    opt.step()  # DTensor parameters: foreach ops have no sharding rules for them
    got = health.take()
    assert got is not None
    after = [p.to_local().detach() for p in job.model.parameters()]
    norm = lambda ts: float(torch.linalg.vector_norm(torch.stack([t.norm() for t in ts])))  # noqa: E731
    delta = norm([a - b for a, b in zip(after, local, strict=True)])
    assert got.read()[0] == pytest.approx((norm(grads), norm(local), delta), rel=1e-5)
    assert delta > 0


@pytest.mark.parametrize(
    ("kind", "args"),
    [
        ("save", {}),
        ("restore", {"id": "latest"}),
        ("lr-find", {"num_iter": 5}),
        ("divergence", {"action": "rollback"}),
        ("checkpoint-policy", {"every": 10}),
    ],
)
def test_under_fsdp_whole_state_commands_are_refused_with_the_reason(
    tmp_path: Path, group: None, kind: str, args: dict[str, Any]
) -> None:
    from jobs import command

    from optitui.trainer.control import commands as control

    t = make_trainer(tmp_path, _fsdp2_job(), dist_info=_info())
    t._start()
    with pytest.raises(control.Rejection, match=r"sharded across ranks \(FSDP2 \(fully_shard\)\)"):
        control.apply(t, command(kind, **args))
    assert t.pending_test is None and t.guard.policy.action == "pause"
    control.apply(t, command("checkpoint-policy", keep_last=2))  # what copies nothing is fine
    t.recorder.close()


def test_under_fsdp_a_job_asking_for_checkpoints_is_told_they_are_off(
    tmp_path: Path, group: None
) -> None:
    from optitui.store.reader import RunReader

    job = _fsdp2_job(checkpoint_every=5, on_divergence="rollback")
    t = make_trainer(tmp_path, job, dist_info=_info())
    t._start()
    assert t.policy.every is None and t.guard.policy.action == "pause"
    t.recorder.close()
    with RunReader(t.paths.root) as r:
        (said,) = [e.message for e in r.events() if "sharded" in e.message]
    assert "turned off: periodic and best checkpoints, divergence rollback" in said
    assert "torch.distributed.checkpoint" in said


def test_fsdp1_and_dtensor_parameters_are_detected(group: None) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.tensor import Replicate, distribute_tensor

    # FSDP1 needs an accelerator to be built; its class is what is looked for
    wrapped = FullyShardedDataParallel.__new__(FullyShardedDataParallel)
    torch.nn.Module.__init__(wrapped)
    outer = torch.nn.Sequential(torch.nn.Linear(2, 2))
    outer.add_module("inner", wrapped)
    opt = torch.optim.SGD(outer.parameters(), lr=0.1)
    assert dist.sharded_by(outer, opt) == "FSDP (FullyShardedDataParallel)"
    mesh = init_device_mesh("cpu", (1,))
    weight = torch.nn.Parameter(distribute_tensor(torch.randn(2, 2), mesh, [Replicate()]))
    tp = torch.optim.SGD([weight], lr=0.1)
    assert (
        dist.sharded_by(torch.nn.Linear(2, 2), tp)
        == "DTensor parameters (FSDP2 or tensor parallel)"
    )
    plain = torch.nn.Linear(2, 2)
    assert dist.sharded_by(plain, torch.optim.SGD(plain.parameters(), lr=0.1)) is None


def test_the_cost_of_a_periodic_save_under_torchrun_is_said(tmp_path: Path, group: None) -> None:
    """12: rank 0's copy of the state for a periodic save holds the others in their next
    collective: its size and time are said at the start, against --dist-timeout."""
    from optitui.store.reader import RunReader

    t = make_trainer(tmp_path, tiny_job(checkpoint_every=50), dist_info=_info())
    t._start()
    t.recorder.close()
    with RunReader(t.paths.root) as r:
        said = [e.message for e in r.events() if "each periodic checkpoint copies" in e.message]
    assert said and "161 parameters" in said[0] and "--dist-timeout" in said[0]
