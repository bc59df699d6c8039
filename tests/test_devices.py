"""Choosing the device on GPU boxes, checked without a GPU.

nvidia-smi is a stub on PATH that answers ``--query-gpu`` from a table, CUDA's
own view of the devices is handed in as the subprocess would print it, and
``torch.cuda`` functions are replaced where the code under test only decides
(which device, which backend, what to call).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, write_script

from optitui.tui import devices

#: what the stub nvidia-smi knows: PCI order, as nvidia-smi lists GPUs
GPUS = [
    {"index": "0", "uuid": "GPU-0a0a0a0a-1111-2222-3333-444444444444",
     "name": "Tesla T4", "memory.used": "15000", "memory.total": "15360"},
    {"index": "1", "uuid": "GPU-1b1b1b1b-1111-2222-3333-444444444444",
     "name": "NVIDIA H100 80GB HBM3", "memory.used": "512", "memory.total": "81559"},
]  # fmt: skip

STUB = """#!{python}
import json, sys
rows = json.loads({rows!r})
query = next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--query-gpu="))
for row in rows:
    print(", ".join(row[f] for f in query.split(",")))
"""


@pytest.fixture
def nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[list[dict[str, str]]], None]:
    """Put a stub ``nvidia-smi`` answering for ``rows`` first on PATH."""

    def install(rows: list[dict[str, str]]) -> None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        exe = bin_dir / "nvidia-smi"
        exe.write_text(STUB.format(python=sys.executable, rows=json.dumps(rows)))
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    return install


def _no_cuda_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cuda_view", lambda timeout=60.0: None, raising=False)


def _specs_and_names(found: Any) -> list[tuple[str, str]]:
    return [(d.spec, d.name) for d in found.devices]


# -- 3: nvidia-smi's indices are not CUDA's ordinals ---------------------------------------
def test_cuda_visible_devices_hides_the_gpus_cuda_will_not_see(
    nvidia_smi: Callable[[list[dict[str, str]]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    same = [dict(g, name="NVIDIA A100-SXM4-80GB") for g in GPUS]
    nvidia_smi(same)
    _no_cuda_view(monkeypatch)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    found = devices.accelerators()
    # one GPU visible to CUDA (as cuda:0): nothing to pick, and never a cuda:1 that fails
    assert [d.spec for d in found.devices] in ([], ["cuda:0"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{GPUS[1]['uuid'][:12]},{GPUS[0]['uuid']}")
    found = devices.accelerators()
    assert [(d.spec, d.uuid) for d in found.devices] == [
        ("cuda:0", GPUS[1]["uuid"]),
        ("cuda:1", GPUS[0]["uuid"]),
    ]


def test_cuda_ordinals_come_from_cuda_matched_by_uuid(
    nvidia_smi: Callable[[list[dict[str, str]]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    nvidia_smi(GPUS)
    # CUDA's default order is fastest first: the H100 is cuda:0 although nvidia-smi lists it 1
    view = [
        {"ordinal": 0, "uuid": GPUS[1]["uuid"][4:], "name": "NVIDIA H100 80GB HBM3",
         "total_mib": 81559},
        {"ordinal": 1, "uuid": GPUS[0]["uuid"][4:], "name": "Tesla T4", "total_mib": 15360},
    ]  # fmt: skip
    monkeypatch.setattr(devices, "cuda_view", lambda timeout=60.0: view, raising=False)
    found = devices.accelerators()
    assert _specs_and_names(found) == [("cuda:0", "NVIDIA H100 80GB HBM3"), ("cuda:1", "Tesla T4")]
    assert [d.used_mib for d in found.devices] == [512, 15000]  # each GPU's own figure


def test_mig_instances_are_listed_as_cuda_sees_them(
    nvidia_smi: Callable[[list[dict[str, str]]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    nvidia_smi(GPUS)
    view = [
        {"ordinal": 0, "uuid": "MIG-5c5c5c5c-0000", "name": "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
         "total_mib": 40192},
        {"ordinal": 1, "uuid": "MIG-6d6d6d6d-0000", "name": "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
         "total_mib": 40192},
    ]  # fmt: skip
    monkeypatch.setattr(devices, "cuda_view", lambda timeout=60.0: view, raising=False)
    found = devices.accelerators()
    assert [d.spec for d in found.devices] == ["cuda:0", "cuda:1"]
    assert all(d.note == "MIG instance" and d.used_mib is None for d in found.devices)
    assert "40,192 MiB" in found.devices[0].describe()


def test_without_cuda_an_uncertain_numbering_offers_no_choice(
    nvidia_smi: Callable[[list[dict[str, str]]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    nvidia_smi(GPUS)  # two models: CUDA's fastest-first order is not nvidia-smi's
    _no_cuda_view(monkeypatch)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    found = devices.accelerators()
    assert found.devices == [] and found.note and "--device cuda:N" in found.note
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # then nvidia-smi's order is CUDA's
    assert _specs_and_names(devices.accelerators()) == [
        ("cuda:0", "Tesla T4"),
        ("cuda:1", "NVIDIA H100 80GB HBM3"),
    ]


@pytest.mark.parametrize(
    ("visible", "order", "expected"),
    [
        ("1,0", "PCI_BUS_ID", ["GPU-1b", "GPU-0a"]),
        ("1,0", "", None),  # indices in fastest-first order: unknown without CUDA
        ("0,7,1", "PCI_BUS_ID", ["GPU-0a"]),  # CUDA stops at the first bad entry
        ("-1", "PCI_BUS_ID", []),
        ("", "PCI_BUS_ID", []),
        ("GPU-0a0a,GPU-1b1b", "", ["GPU-0a", "GPU-1b"]),
        ("GPU-nope,GPU-0a0a", "", []),
        ("MIG-5c5c5c5c", "PCI_BUS_ID", None),
    ],
)
def test_cuda_visible_devices_parsing(visible: str, order: str, expected: list[str] | None) -> None:
    smi = devices.parse_nvidia_smi(
        "\n".join(", ".join(g[f] for f in devices.SMI_QUERY.split("=")[1].split(",")) for g in GPUS)
    )
    got = devices.from_environment(
        smi, {"CUDA_VISIBLE_DEVICES": visible, "CUDA_DEVICE_ORDER": order}
    )
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert [d.uuid[:6] for d in got] == expected
        assert [d.spec for d in got] == [f"cuda:{i}" for i in range(len(expected))]


def test_rocm_lists_cudas_view_without_memory_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "rocm"
    bin_dir.mkdir()
    (bin_dir / "rocm-smi").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "rocm-smi").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))  # and no nvidia-smi
    view = [
        {"ordinal": i, "uuid": f"{i}", "name": "AMD Instinct MI300X", "total_mib": 196592}
        for i in (0, 1)
    ]
    monkeypatch.setattr(devices, "cuda_view", lambda timeout=60.0: view, raising=False)
    found = devices.accelerators()
    assert [d.spec for d in found.devices] == ["cuda:0", "cuda:1"]
    assert all(d.used_mib is None for d in found.devices)


def test_the_trainer_side_lists_cuda_ordinals(monkeypatch: pytest.MonkeyPatch) -> None:
    from optitui.trainer.core import device

    class Props:
        def __init__(self, i: int) -> None:
            self.uuid = f"0000000{i}-aaaa-bbbb-cccc-dddddddddddd"
            self.name = "NVIDIA A100-SXM4-80GB"
            self.total_memory = 80 * 2**30

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", Props)
    got = device.cuda_inventory()
    assert got == [
        {"ordinal": i, "uuid": Props(i).uuid, "name": Props(i).name, "total_mib": 81920}
        for i in (0, 1)
    ]
    # on this CPU-only machine the real subprocess answers: no CUDA devices
    out = subprocess.run(
        [sys.executable, "-m", "optitui.trainer.core.device"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout) == []


# -- 1: torchrun gives each rank its own GPU -------------------------------------------------
def test_several_ranks_open_no_picker(tiny_script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from optitui import launch
    from optitui.cli import run

    def no_picker() -> str | None:
        raise AssertionError("the device picker opened for a torchrun job")

    monkeypatch.setattr(run, "_pick_device", no_picker)
    monkeypatch.setattr(run, "has_terminal", lambda: True, raising=False)  # a dashboard run
    started: list[Any] = []

    def start_job(opts: Any, **kw: Any) -> Any:
        started.append(opts)
        raise launch.LaunchError("not started in this test")

    monkeypatch.setattr(launch, "start_job", start_job)
    from optitui.cli import main

    root = tiny_script.parent / "runs"
    assert main(["run", str(tiny_script), "--nproc-per-node", "2", "--root", str(root)]) == 2
    (opts,) = started
    assert opts.device == "auto"  # each rank resolves it to cuda:LOCAL_RANK


def test_one_gpu_for_several_ranks_is_refused(
    tiny_script: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "optitui", "run", str(tiny_script), "--headless",
         "--nproc-per-node", "2", "--device", "cuda:1", "--root", str(tiny_script.parent)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert res.returncode == 2
    assert "every rank would train on that one GPU" in res.stderr
    assert not (tiny_script.parent / "runs").exists()


def test_each_rank_takes_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from optitui.trainer.core import dist
    from optitui.trainer.core.device import DeviceError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dist.rank_device("auto", 3, 4) == "cuda:3"
    assert dist.rank_device("cuda", 1, 2) == "cuda:1"
    assert dist.rank_device("cuda:5", 0, 1) == "cuda:5"  # one rank per node: its choice
    assert dist.rank_device("cpu", 1, 2) == "cpu"
    with pytest.raises(DeviceError, match="one cuda:N would put them all on one GPU"):
        dist.rank_device("cuda:1", 0, 2)


# -- 2: the backend follows the selected device ----------------------------------------------
def test_cpu_ranks_use_gloo_on_a_cuda_box(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as torch_dist

    from optitui.trainer.core import dist

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda, "set_device", lambda d: pytest.fail("set_device for a CPU rank")
    )
    for k, v in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
    }.items():
        monkeypatch.setenv(k, v)
    asked: list[str] = []
    real = torch_dist.init_process_group

    def init(backend: str, **kw: Any) -> None:
        asked.append(backend)
        real("gloo", store=torch_dist.HashStore(), rank=0, world_size=1)

    monkeypatch.setattr(torch_dist, "init_process_group", init)
    device = torch.device(dist.rank_device("cpu", 0, 1))
    try:
        info = dist.init_from_env(device, 30.0)
        assert info is not None and info.backend == "gloo"
    finally:
        torch_dist.destroy_process_group()
    assert asked == ["gloo"]
    assert dist.backend_for(torch.device("cuda", 1)) == "nccl"


# -- 4: --device cuda:N makes it the current device --------------------------------------------
SEES_CURRENT = """
import torch, optitui
from torch import nn
SEEN = []

def setup(device):
    SEEN.append((str(device), torch.cuda.current_device()))  # as user code saying "cuda" would
    model = nn.Linear(2, 1)
    return optitui.Job(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                       train_data=[(torch.randn(4, 2), torch.randn(4, 1))],
                       loss_fn=nn.functional.mse_loss)
"""


def test_device_cuda_n_is_set_before_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from optitui.trainer.entry import headless

    current = [0]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current[0])
    monkeypatch.setattr(
        torch.cuda, "set_device", lambda d: current.__setitem__(0, torch.device(d).index)
    )
    script = write_script(tmp_path, SEES_CURRENT)
    trainer = headless.prepare(headless.RunOptions(script=script, device="cuda:1", root=tmp_path))
    try:
        module = sys.modules["__optitui_script__"]
        assert module.SEEN == [("cuda:1", 1)]
        assert trainer.device == torch.device("cuda", 1)
    finally:
        trainer.recorder.close()


# -- 5: collectives name the job's device -----------------------------------------------------
def test_collectives_pass_the_jobs_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as torch_dist
    from jobs import make_trainer, tiny_job

    from optitui.trainer.core.dist import DistInfo

    torch_dist.init_process_group("gloo", store=torch_dist.HashStore(), rank=0, world_size=1)
    try:
        t = make_trainer(tmp_path, tiny_job(), dist_info=DistInfo(0, 1, 0, "gloo"))
        seen: list[Any] = []
        real = torch_dist.broadcast_object_list

        def spy(
            box: list[Any], src: int = 0, group: Any = None, device: Any = None, **kw: Any
        ) -> None:
            seen.append(device)
            real(box, src=src, group=group, device=device)

        monkeypatch.setattr(torch_dist, "broadcast_object_list", spy)
        t._sync()
        assert seen == [torch.device("cpu")]  # gloo: the CPU, named, never "the current device"
        t.recorder.close()
    finally:
        torch_dist.destroy_process_group()


def test_a_float_loss_in_flight_is_put_on_the_jobs_device(tmp_path: Path) -> None:
    from jobs import command

    import optitui

    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = optitui.watch(opt, model=model, run_dir=tmp_path / "run")
    try:
        t = probe.trainer
        assert t is not None
        from optitui.trainer.control import commands as control

        control.apply(t, command("lr-find", num_iter=3))
        t._take_commands() if t.commands else None
        t.run_range_test(t.pending_test) if t.pending_test is not None else None
        assert probe.testing
        t.device = torch.device("meta")  # stands for cuda:k: where the loss must go
        means: list[torch.device] = []
        t.mean = lambda v: (means.append(v.device), 1.0)[1]  # type: ignore[method-assign]
        model(torch.randn(4, 2)).sum().backward()
        opt.step()
        probe.step(0.5)  # a float loss, as a loop that calls loss.item() passes it
        assert means == [torch.device("meta")]
    finally:
        t.device = torch.device("cpu")
        probe.close()


# -- 10: which memory is which ------------------------------------------------------------------
def test_the_job_reports_allocated_and_reserved_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs import make_trainer, tiny_job

    from optitui.store.reader import RunReader
    from optitui.trainer.loop import step as loop

    monkeypatch.setattr(loop, "memory_allocated", lambda d: 3 << 30)
    monkeypatch.setattr(loop, "memory_reserved", lambda d: 5 << 30, raising=False)
    t = make_trainer(tmp_path, tiny_job(max_steps=4), flush_every=2)
    assert t.run() == "finished"
    with RunReader(t.paths.root) as r:
        assert r.status().device_mem == 3 << 30
        assert r.meta()["memory"] == {"allocated": 3 << 30, "reserved": 5 << 30}


def test_the_status_bar_labels_the_jobs_memory() -> None:
    from optitui.store.reader import Status
    from optitui.tui.widgets.status_bar import StatusBar

    bar = StatusBar("run")
    bar.status = Status("running", 10, 0, 0.0, None, 1.0, None, 3 << 30, None)
    bar.meta = {"device": "cuda:1", "memory": {"allocated": 3 << 30, "reserved": 5 << 30}}
    text = " ".join(f.text.plain for f in bar.fields(0.0))
    assert "cuda:1 allocated 3.0 GiB, reserved 5.0 GiB" in text
