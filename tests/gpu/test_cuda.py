"""On a CUDA machine: devices, torchrun, AMP, tensor lrs, RNG and snapshot sizes for real.

Skipped without CUDA. On a GPU box run it alone::

    python -m pytest -q tests/gpu            # one GPU: all but the multi-GPU tests
                                             # two or more: those too (NCCL, torchrun)

Host-device syncs are caught with ``torch.cuda.set_sync_debug_mode``: "error"
around the training steps (any sync there raises, naming the op), "warn"
counted around a flush (a few batched reads, whatever the number of steps).
Each test says which point of the GPU checklist it covers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
two_gpus = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs"
)


# -- sync counting -----------------------------------------------------------------------------
@contextlib.contextmanager
def no_syncs() -> Iterator[None]:
    """Any host-device sync inside raises (``set_sync_debug_mode("error")``)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def count_syncs(fn: Callable[[], Any]) -> int:
    """How many synchronizing CUDA operations ``fn`` makes (``"warn"`` mode, counted)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.fixture(autouse=True)
def _keep_current_device() -> Iterator[None]:
    """Tests that select a device put the current one back."""
    before = torch.cuda.current_device()
    yield
    torch.cuda.set_device(before)
    torch.cuda.set_sync_debug_mode("default")


# -- a small job on the GPU, data already there (no host copies in the steps) -------------------
def _job(
    device: torch.device,
    optimizer: str = "AdamW",
    opt_kwargs: dict[str, Any] | None = None,
    **job_kwargs: Any,
) -> Any:
    from optitui.trainer.core.job import Job

    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 32, generator=g)
    y = (x @ torch.randn(32, 1, generator=g)) * 30  # big enough for fp16 to overflow at first
    batches = [(x[i : i + 64].to(device), y[i : i + 64].to(device)) for i in range(0, 512, 64)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 1)).to(device)
    opt = getattr(torch.optim, optimizer)(model.parameters(), **({"lr": 1e-3} | (opt_kwargs or {})))
    return Job(
        model=model,
        optimizer=opt,
        train_data=batches,
        loss_fn=nn.functional.mse_loss,
        **job_kwargs,
    )


def _trainer(tmp_path: Path, job: Any, **kw: Any) -> Any:
    from optitui.store.layout import create_run_dir
    from optitui.trainer.loop.trainer import Trainer

    paths = create_run_dir(tmp_path, "run", tmp_path / "run")
    return Trainer(job, torch.device(job.model[0].weight.device), paths, **kw)


def _steps(t: Any, n: int) -> None:
    for _ in range(n):
        t._take_commands()
        t._train_step()
        t.step += 1


def _columns(t: Any) -> dict[str, list[float]]:
    from optitui.store.reader import RunReader

    with RunReader(t.paths.root) as r:
        return {k: list(v) for k, v in r.read_metrics().columns.items()}


def _events(t: Any) -> list[str]:
    from optitui.store.reader import RunReader

    with RunReader(t.paths.root) as r:
        return [e.message for e in r.events()]


CUDA = torch.device("cuda", 0)


# -- the hot path: no sync per step, a few per flush -----------------------------------------------
@pytest.mark.parametrize(
    ("precision", "optimizer", "kwargs", "clip"),
    [
        ("32", "AdamW", {}, None),
        ("32", "AdamW", {"fused": True}, 1.0),
        ("bf16", "AdamW", {"fused": True}, 1.0),
        ("fp16", "AdamW", {"fused": True}, 1.0),  # 17: fused takes the scaler's flag: no sync
        ("32", "Adam", {"capturable": True, "tensor_lr": True}, None),  # 6: lr on the GPU
    ],
)
def test_no_sync_in_a_step_and_a_few_per_flush(
    tmp_path: Path, precision: str, optimizer: str, kwargs: dict[str, Any], clip: float | None
) -> None:
    """6, 17: the steps (forward, backward, clip, GradScaler, optimizer, recording the
    loss, the grad norm, a tensor lr and the skipped flag) never sync; a flush reads
    each buffer once, however many steps it holds."""
    kwargs = dict(kwargs)
    if kwargs.pop("tensor_lr", False):
        kwargs["lr"] = torch.tensor(1e-3, device=CUDA)
    job = _job(CUDA, optimizer, kwargs, precision=precision, clip_grad_norm=clip)
    t = _trainer(tmp_path, job, flush_every=10_000, flush_seconds=1e9)
    t._start()
    _steps(t, 3)  # warm-up: cuBLAS handles, the optimizer's lazy state
    t.flush()
    with no_syncs():
        _steps(t, 50)
    short = count_syncs(t.flush)
    with no_syncs():
        _steps(t, 200)
    long = count_syncs(t.flush)
    # losses, grad norms, skipped flags, tensor lrs: each read once (a handful of syncs),
    # the same for 50 steps as for 200
    assert long == short <= 8
    t.recorder.close()


# -- 1, 2, 4: which device, which backend ---------------------------------------------------------
SEES_DEVICE = """
import json, os, torch, optitui
from torch import nn

def setup(device):
    info = {"rank": int(os.environ.get("RANK", "0")), "device": str(device),
            "current": torch.cuda.current_device() if torch.cuda.is_available() else None,
            "backend": (str(torch.distributed.get_backend())
                        if torch.distributed.is_initialized() else None)}
    out = os.environ["OPTITUI_TEST_OUT"]
    with open(os.path.join(out, f"rank{info['rank']}.json"), "w") as f:
        json.dump(info, f)
    model = nn.Linear(4, 1).to(device)
    data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]
    return optitui.Job(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                       train_data=data, loss_fn=nn.functional.mse_loss, max_steps=8, sync_every=4)
"""


def _optitui_run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[Any, list[Any]]:
    script = tmp_path / "sees_device.py"
    script.write_text(SEES_DEVICE)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    full = {**os.environ, "PYTHONPATH": str(REPO), "OPTITUI_TEST_OUT": str(out), **(env or {})}
    res = subprocess.run(
        [sys.executable, "-m", "optitui", "run", str(script), "--headless", "--root",
         str(tmp_path / "runs"), *args],
        capture_output=True, text=True, env=full, timeout=300, cwd=REPO,
    )  # fmt: skip
    seen = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    return res, seen


@two_gpus
def test_torchrun_gives_each_rank_its_own_gpu_and_nccl(tmp_path: Path) -> None:
    """1, 2, 4: under torchrun each rank trains on cuda:LOCAL_RANK, made current before
    setup(), and the process group is NCCL."""
    res, seen = _optitui_run(tmp_path, "--nproc-per-node", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert seen == [
        {"rank": r, "device": f"cuda:{r}", "current": r, "backend": "nccl"} for r in (0, 1)
    ]


def test_cpu_ranks_on_a_cuda_box_use_gloo(tmp_path: Path) -> None:
    """2: --device cpu under torchrun picks gloo, though CUDA is there."""
    res, seen = _optitui_run(tmp_path, "--nproc-per-node", "2", "--device", "cpu")
    assert res.returncode == 0, res.stderr[-3000:]
    assert [(s["device"], s["backend"]) for s in seen] == [("cpu", "gloo")] * 2


@two_gpus
def test_one_gpu_for_several_ranks_is_refused(tmp_path: Path) -> None:
    """1: --device cuda:1 with two ranks on this machine is refused before anything runs."""
    res, seen = _optitui_run(tmp_path, "--nproc-per-node", "2", "--device", "cuda:1")
    assert res.returncode == 2 and "every rank would train on that one GPU" in res.stderr
    assert seen == []


def test_device_cuda_n_is_current_before_setup(tmp_path: Path) -> None:
    """4: --device cuda:N makes N the current device, so "cuda" in the script means N."""
    last = torch.cuda.device_count() - 1
    res, seen = _optitui_run(tmp_path, "--device", f"cuda:{last}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert seen == [{"rank": 0, "device": f"cuda:{last}", "current": last, "backend": None}]


# -- 3: the picker's numbering is CUDA's -----------------------------------------------------------
def _cuda_uuids() -> list[str]:
    return [str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())]


def _bare(uuid: str) -> str:
    return uuid.lower().removeprefix("gpu-").removeprefix("mig-")


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="needs nvidia-smi")
def test_the_pickers_cuda_n_is_cudas_device_n() -> None:
    """3: each listed cuda:N has CUDA's device N's UUID; memory in use comes from the
    nvidia-smi row of that same GPU."""
    from optitui.tui import devices

    found = devices.accelerators()
    if torch.cuda.device_count() < 2:
        assert len(found.devices) <= 1  # nothing to choose from
        return
    uuids = _cuda_uuids()
    assert [d.spec for d in found.devices] == [f"cuda:{i}" for i in range(len(uuids))]
    for d, uuid in zip(found.devices, uuids, strict=True):
        assert _bare(d.uuid) == _bare(uuid)


@two_gpus
@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="needs nvidia-smi")
def test_cuda_visible_devices_renumbers_the_picker() -> None:
    """3: with CUDA_VISIBLE_DEVICES naming one GPU, the list (made in a process that sees
    that environment) has one device, cuda:0, and it is that GPU (so no picker opens and
    no cuda:1 that would fail is offered)."""
    last = _cuda_uuids()[-1]
    code = (
        "import json; from optitui.tui import devices; f = devices.accelerators();"
        "print(json.dumps([[d.spec, d.uuid] for d in f.devices]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": f"GPU-{last}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120, check=True)  # fmt: skip
    ((spec, uuid),) = json.loads(out.stdout)
    assert spec == "cuda:0" and _bare(uuid) == _bare(last)
    view = subprocess.run([sys.executable, "-m", "optitui.trainer.core.device"],
                          capture_output=True,
                          text=True, env=env, timeout=120, check=True)  # fmt: skip
    (only,) = json.loads(view.stdout)
    assert only["ordinal"] == 0 and only["uuid"] == last


# -- 6, 7: tensor lrs ------------------------------------------------------------------------------
def _tensor_lr_trainer(tmp_path: Path, **kw: Any) -> Any:
    lr = torch.tensor(0.01, device=CUDA)
    job = _job(CUDA, "Adam", {"lr": lr, "capturable": True}, **kw)
    job.scheduler = torch.optim.lr_scheduler.ExponentialLR(job.optimizer, gamma=0.5)
    return _trainer(tmp_path, job, flush_every=9, flush_seconds=1e9), lr


def test_each_step_records_the_tensor_lr_it_used(tmp_path: Path) -> None:
    """6: a capturable Adam's lr lives on the GPU and the scheduler writes into it; each
    recorded step has its own value, read at the flush."""
    t, lr = _tensor_lr_trainer(tmp_path, max_steps=9)
    assert t.run() == "finished"
    assert t.optimizer.param_groups[0]["lr"] is lr
    assert _columns(t)["lr/0"] == pytest.approx([0.01 * 0.5**k for k in range(9)], rel=1e-6)


def test_a_restore_keeps_the_lr_tensor_on_the_gpu(tmp_path: Path) -> None:
    """7: restore copies into the optimizer's own GPU tensors; the fused/capturable step
    goes on with them (a CPU tensor there would fail or fall back)."""
    from optitui.trainer.core import state

    t, lr = _tensor_lr_trainer(tmp_path)
    t._start()
    _steps(t, 3)
    moments = [t.optimizer.state[p]["exp_avg"] for p in t.model.parameters()]
    snap = state.capture(t)
    _steps(t, 3)
    state.restore(t, snap)
    g = t.optimizer.param_groups[0]
    assert g["lr"] is lr and lr.device == CUDA
    assert float(lr) == pytest.approx(0.01 * 0.5**3)
    now = [t.optimizer.state[p]["exp_avg"] for p in t.model.parameters()]
    assert all(a is b for a, b in zip(moments, now, strict=True))  # loaded in place
    _steps(t, 2)  # the capturable step runs on the restored tensors
    t.recorder.close()


# -- 8: a probe under GradScaler with a fused optimizer --------------------------------------------
def test_probe_clips_true_gradients_and_records_skipped_steps(tmp_path: Path) -> None:
    """8: fused AdamW + GradScaler("cuda") + fp16 autocast + the probe clipping: the
    recorded norm is the unscaled one, overflow steps are recorded as skipped (not a
    divergence), and the loop's steps make no sync."""
    import optitui

    job = _job(CUDA, "AdamW", {"fused": True})
    model, opt, batches = job.model, job.optimizer, job.train_data
    scaler = torch.amp.GradScaler(CUDA.type)
    probe = optitui.watch(opt, model=model, run_dir=tmp_path / "r", flush_every=1000)
    assert probe.trainer is not None
    probe.trainer.clip = 1.0
    probe.trainer.flush_seconds = 1e9  # no flush (a batched read) inside the checked steps

    def one(i: int) -> None:
        x, y = batches[i % len(batches)]
        with torch.autocast(CUDA.type, dtype=torch.float16):
            loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        probe.step(loss)

    one(0)  # warm-up
    with no_syncs():
        for i in range(1, 40):
            one(i)
    probe.close()
    from optitui.store.reader import RunReader

    with RunReader(tmp_path / "r") as r:
        cols = {k: list(v) for k, v in r.read_metrics().columns.items()}
        errors = [e.message for e in r.events() if e.kind == "error"]
    skipped, norms = cols["skipped"], cols["grad_norm"]
    assert skipped[0] == 1.0 and 0 < sum(skipped) < 40
    assert all(math.isnan(g) == bool(s) for g, s in zip(norms, skipped, strict=True))
    assert all(g < 1e4 for g, s in zip(norms, skipped, strict=True) if not s)  # not x 65536
    assert errors == []


# -- 17: Job(precision=...) ------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_precision_autocasts_on_the_gpu(tmp_path: Path, precision: str) -> None:
    """17: the forward runs under CUDA autocast in the asked dtype; fp16 has a CUDA
    GradScaler whose early skips are recorded; losses are the true ones."""
    job = _job(CUDA, "AdamW", {"fused": True}, precision=precision, max_steps=40)
    dtypes: list[torch.dtype] = []
    first = job.model[0]
    first.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    t = _trainer(tmp_path, job, flush_every=10)
    assert t.run() == "finished"
    want = torch.bfloat16 if precision == "bf16" else torch.float16
    assert set(dtypes) == {want}
    cols = _columns(t)
    assert all(math.isfinite(x) and x < 1e6 for x in cols["loss"])
    if precision == "fp16":
        assert t.amp.scaler is not None and t.amp.scaler.get_scale() < 2.0**16
        assert cols["skipped"][0] == 1.0
    else:
        assert t.amp.scaler is None and "skipped" not in cols
    assert not [m for m in _events(t) if "non-finite" in m]


def test_the_range_test_restores_the_scaler_and_the_model_exactly(tmp_path: Path) -> None:
    """17, 18: a range test under fp16 steps through the scaler and puts everything back
    (the scale included); with the snapshot limit lowered it goes through a file."""
    job = _job(CUDA, "AdamW", {"fused": True}, precision="fp16")
    job.snapshot_limit_gb = 1e-6
    t = _trainer(tmp_path, job)
    t._start()
    _steps(t, 10)
    scaler = t.amp.scaler
    assert scaler is not None
    before = [p.detach().clone() for p in t.model.parameters()]
    scale = scaler.get_scale()
    from jobs import command

    from optitui.trainer.control import commands as control

    control.apply(t, command("lr-find", start_lr=1e-5, end_lr=10.0, num_iter=30))
    test = t.run_range_test(t.pending_test)
    assert test.status == "done" and test.to_disk
    assert scaler.get_scale() == scale
    assert all(torch.equal(a, b) for a, b in zip(t.model.parameters(), before, strict=True))
    t.recorder.close()


# -- 13: CUDA RNG states ---------------------------------------------------------------------------
def test_cuda_rng_is_restored_and_a_smaller_machine_restores_what_matches() -> None:
    """13: the CUDA generators come back exactly; a snapshot from a process that saw more
    GPUs restores the ones this process has, and says so."""
    from optitui.trainer.core import state

    torch.zeros(1, device=CUDA)  # CUDA initialised: its generators are in the snapshot
    torch.cuda.manual_seed_all(3)
    saved = state.rng_state([])
    assert len(saved["cuda"]) == torch.cuda.device_count()
    a = torch.rand(4, device=CUDA)
    assert state.set_rng_state(saved, []) is None
    assert torch.equal(torch.rand(4, device=CUDA), a)
    more = dict(saved, cuda=[*saved["cuda"], saved["cuda"][0].clone()])
    note = state.set_rng_state(more, [])
    assert note is not None and f"this process sees {torch.cuda.device_count()}" in note
    assert torch.equal(torch.rand(4, device=CUDA), a)


def _nccl_rank(rank: int, port: int, run_dir: str, out: Any) -> None:
    """One of two NCCL ranks on cuda:rank: save together, move every RNG on, restore."""
    import torch.distributed as torch_dist

    from optitui.store.layout import RunPaths, create_run_dir
    from optitui.trainer.core import checkpoint, state
    from optitui.trainer.core.dist import DistInfo
    from optitui.trainer.loop.trainer import Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = torch.device("cuda", rank)
    torch.cuda.set_device(device)
    torch_dist.init_process_group("nccl", rank=rank, world_size=2)
    try:
        paths = create_run_dir(Path(run_dir).parent, "r", run_dir) if rank == 0 else None
        torch_dist.barrier()
        t = Trainer(_job(device), device, paths or RunPaths(Path(run_dir)),
                    dist_info=DistInfo(rank, 2, rank, "nccl"))  # fmt: skip
        t._start()
        torch.cuda.manual_seed(100 + rank)  # each rank's own dropout stream
        t.save_checkpoint("manual", every_rank=True)
        mine = torch.cuda.get_rng_state(device).clone()
        if t.saver is not None:
            t.saver.wait()
        torch_dist.barrier()
        torch.rand(100, device=device)
        m = checkpoint.listing(t.paths.checkpoints)[-1]
        snap = checkpoint.load(t.paths.checkpoints / m.file, m)
        state.restore(t, snap)
        out.put((rank, torch.equal(torch.cuda.get_rng_state(device), mine)))
        t.recorder.close()
    finally:
        torch_dist.destroy_process_group()


@two_gpus
def test_each_nccl_rank_restores_its_own_cuda_rng(tmp_path: Path) -> None:
    """13, 5: a checkpoint saved by both ranks holds each rank's CUDA generator (gathered
    through each rank's own GPU), and each rank gets its own back."""
    import multiprocessing
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_nccl_rank, args=(r, port, str(tmp_path / "r"), out)) for r in (0, 1)
    ]
    for p in procs:
        p.start()
    got = sorted(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(60)
    assert got == [(0, True), (1, True)]


# -- 18: what a snapshot costs, measured against the allocator -------------------------------------
def test_the_size_estimate_matches_what_the_gpu_holds() -> None:
    """18: the estimate made before the first step equals the bytes the parameters and
    AdamW's state really take on the GPU (the allocator rounds blocks up a little)."""
    from optitui.trainer.core import footprint

    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated(CUDA)
    model = nn.Sequential(nn.Linear(4096, 4096), nn.Linear(4096, 1024)).to(CUDA)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    estimate = footprint.measure(model, opt)  # no state yet: estimated
    model(torch.randn(8, 4096, device=CUDA)).sum().backward()
    opt.step()
    torch.cuda.synchronize()
    grads = sum(
        p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None
    )
    held = torch.cuda.memory_allocated(CUDA) - base - grads
    assert estimate.total == pytest.approx(held, rel=0.01)
    assert footprint.measure(model, opt).optimizer_bytes == estimate.optimizer_bytes


# -- the health's copy on the device -----------------------------------------------------
def test_the_health_copy_stays_under_its_cap_on_the_device() -> None:
    """GPU checklist: memory. A health step copies at most ``health_copy_gb`` of the
    parameters on the device: a 64 MB model under a 16 MB cap peaks about 16 MB above
    the step without health, the whole model under a cap it fits in 64 MB above."""
    from optitui.trainer.core.health import Health

    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = nn.Sequential(*(nn.Linear(1024, 1024, bias=False) for _ in range(16))).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)  # no state: the copy alone
    x = torch.randn(8, 1024, device=dev)
    mb = 2**20

    def peak(h: Health | None) -> float:
        opt.zero_grad(set_to_none=False)
        model(x).square().mean().backward()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        if h is not None:
            h.start(0, opt)
        opt.step()
        got = h.take() if h is not None else None
        torch.cuda.synchronize()
        if got is not None:
            rows = got.read()
            assert all(g > 0 and w > 0 for g, w, _ in rows)
        return (torch.cuda.max_memory_allocated() - base) / mb

    bare = peak(None)
    capped = peak(Health(1, copy_gb=16 * mb / 1e9))
    whole = peak(Health(1, copy_gb=1.0))
    assert capped - bare <= 16 + 1, (bare, capped)
    assert whole - bare >= 64, (bare, whole)
