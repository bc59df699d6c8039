"""The machine sampler: /proc on this host, NVML faked (CUDA and NVML number GPUs
differently), no NVML at all, and the sampler inside a running job."""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from conftest import wait_for
from jobs import make_trainer, tiny_job

from optitui.store import system
from optitui.store.reader import RunReader
from optitui.store.supervise import Supervisor
from optitui.trainer.core import machine


class FakeNVMLError(Exception):
    pass


def fake_nvml(broken: tuple[str, ...] = ()) -> ModuleType:
    """Two GPUs in NVML's (PCI) order: index 0 is "aaaa", index 1 is "bbbb". ``broken``
    names calls that raise NVMLError (a field the GPU does not report)."""
    m = ModuleType("pynvml")
    gpus = {"h0": ("GPU-aaaa", 10, 1_000, 40, 50_000), "h1": ("GPU-bbbb", 90, 7_000, 71, 250_000)}
    calls: list[str] = []

    def api(name: str, fn: Any) -> None:
        def wrapped(*a: Any) -> Any:
            calls.append(name)
            if name in broken:
                raise FakeNVMLError(name)
            return fn(*a)

        setattr(m, name, wrapped)

    api("nvmlInit", lambda: None)
    api("nvmlShutdown", lambda: None)
    api("nvmlDeviceGetCount", lambda: 2)
    api("nvmlDeviceGetHandleByIndex", lambda i: f"h{i}")
    api("nvmlDeviceGetUUID", lambda h: gpus[h][0].encode())  # bytes, as older releases give
    api("nvmlDeviceGetHandleByUUID", lambda u: _raise(FakeNVMLError("not found")))
    api("nvmlDeviceGetUtilizationRates", lambda h: SimpleNamespace(gpu=gpus[h][1], memory=0))
    api(
        "nvmlDeviceGetMemoryInfo",
        lambda h: SimpleNamespace(used=gpus[h][2] * 2**20, total=80 * 2**30),
    )
    api("nvmlDeviceGetTemperature", lambda h, kind: gpus[h][3])
    api("nvmlDeviceGetPowerUsage", lambda h: gpus[h][4])  # milliwatts
    m.NVMLError = FakeNVMLError  # type: ignore[attr-defined]
    m.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    m.calls = calls  # type: ignore[attr-defined]
    return m


def _raise(exc: Exception) -> Any:
    raise exc


def _sampler(**kw: Any) -> tuple[machine.Sampler, list[machine.Columns], list[str]]:
    batches: list[machine.Columns] = []
    notes: list[str] = []
    s = machine.Sampler(Supervisor(), emit=batches.append, note=notes.append, **kw)
    return s, batches, notes


def test_proc_values_are_sane_on_this_host() -> None:
    rss = machine.rss_bytes()
    host = machine.host_memory()
    assert rss is not None and host is not None
    used, total = host
    assert 10 * 2**20 < rss < total  # a Python with torch holds more than 10 MiB
    assert 0 < used < total
    # busy until this process has used 0.2 s of CPU, however shared the cores are
    clock = machine.CpuClock()
    cpu0, wall0 = time.process_time(), time.monotonic()
    while time.process_time() - cpu0 < 0.2:
        pass
    spent, wall = time.process_time() - cpu0, time.monotonic() - wall0
    cpu = clock.percent()
    assert cpu is not None and cpu > 0
    assert cpu == pytest.approx(100 * spent / wall, rel=0.25)  # % of one core


def test_missing_proc_files_leave_the_fields_out(tmp_path: Path) -> None:
    assert machine.rss_bytes(str(tmp_path / "none")) is None
    assert machine.host_memory(str(tmp_path / "none")) is None
    (tmp_path / "meminfo").write_text("MemTotal: 100 kB\n")  # no MemAvailable (old kernels)
    assert machine.host_memory(str(tmp_path / "meminfo")) is None


def test_each_gpu_is_found_by_uuid_and_named_by_its_cuda_ordinal() -> None:
    nvml = fake_nvml()
    # CUDA_VISIBLE_DEVICES=1,0: cuda:0 is NVML's index 1
    wanted = [{"ordinal": 0, "uuid": "bbbb"}, {"ordinal": 1, "uuid": "GPU-AAAA"}]
    s, batches, notes = _sampler(gpus=lambda: wanted, nvml=lambda: nvml, batch=2)
    first = s.sample()
    assert first["gpu0/util_percent"] == 90 and first["gpu1/util_percent"] == 10
    assert first["gpu0/mem_used_bytes"] == 7_000 * 2**20
    assert first["gpu0/mem_total_bytes"] == 80 * 2**30
    assert first["gpu0/temp_c"] == 71 and first["gpu0/power_w"] == 250.0
    assert first["cpu_percent"] >= 0 and first["rss_bytes"] > 0
    assert batches == [] and notes == []
    s.sample()
    assert len(batches) == 1 and len(batches[0]["gpu1/temp_c"]) == 2  # one batch of two
    s.sample()
    s.stop()  # what is buffered goes out, NVML is shut down
    assert len(batches) == 2 and len(batches[1]["time"]) == 1
    assert nvml.calls[-1] == "nvmlShutdown"  # type: ignore[attr-defined]


def test_a_field_nvml_cannot_report_is_absent_and_the_rest_recorded() -> None:
    nvml = fake_nvml(broken=("nvmlDeviceGetUtilizationRates", "nvmlDeviceGetPowerUsage"))
    s, _, _ = _sampler(gpus=lambda: [{"ordinal": 0, "uuid": "aaaa"}], nvml=lambda: nvml)
    got = s.sample()
    assert "gpu0/util_percent" not in got and "gpu0/power_w" not in got
    assert got["gpu0/temp_c"] == 40
    assert not [k for k in got if k.startswith("gpu1")]  # only the GPUs asked for


def test_without_nvml_the_gpu_fields_are_absent_and_the_user_is_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    s, _, notes = _sampler(gpus=lambda: [{"ordinal": 0, "uuid": "aaaa"}])
    got = s.sample()
    assert not [k for k in got if k.startswith("gpu")]
    assert {"time", "step", "cpu_percent", "rss_bytes", "host_mem_used_bytes"} <= set(got)
    assert len(notes) == 1 and "optitui[gpu]" in notes[0]
    s.sample()
    assert len(notes) == 1  # said once


def test_the_default_loader_finds_an_installed_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    s, _, notes = _sampler(gpus=lambda: [{"ordinal": 0, "uuid": "aaaa"}])
    assert s.sample()["gpu0/util_percent"] == 10 and notes == []


def test_a_cpu_run_never_loads_nvml() -> None:
    loads: list[int] = []
    s, _, notes = _sampler(gpus=list, nvml=lambda: loads.append(1) or None)  # type: ignore[func-returns-value]
    assert not [k for k in s.sample() if k.startswith("gpu")]
    assert loads == [] and notes == []


def test_nvml_without_a_driver_is_said_once() -> None:
    nvml = fake_nvml(broken=("nvmlInit",))
    s, _, notes = _sampler(gpus=lambda: [{"ordinal": 0, "uuid": "aaaa"}], nvml=lambda: nvml)
    s.sample()
    s.sample()
    assert len(notes) == 1 and "could not start" in notes[0]


def test_a_gpu_nvml_does_not_list_is_named() -> None:
    s, _, notes = _sampler(
        gpus=lambda: [{"ordinal": 0, "uuid": "aaaa"}, {"ordinal": 3, "uuid": "zzzz"}],
        nvml=fake_nvml,
    )
    got = s.sample()
    assert "gpu0/util_percent" in got and not [k for k in got if k.startswith("gpu3")]
    assert len(notes) == 1 and "cuda:3" in notes[0]


def test_samples_travel_packed_between_ranks() -> None:
    now = 1_800_000_000.0
    samples = [
        {"time": now - 3.5, "step": 120.0, "cpu_percent": 99.0, "gpu1/util_percent": 12.0},
        {"time": now - 1.5, "step": 130.0, "rss_bytes": 2.0**31},
    ]
    packed = machine.pack(samples, now)
    assert len(packed) == machine.PACKED_SAMPLES * len(machine.PACKED_FIELDS)
    import torch  # the all-gather carries float32

    back = machine.unpack(torch.tensor(packed).tolist(), now)
    assert len(back) == 2
    assert back[0]["gpu1/util_percent"] == 12.0 and back[0]["step"] == 120.0
    assert abs(back[0]["time"] - (now - 3.5)) < 1e-3 and "rss_bytes" not in back[0]
    assert back[1]["rss_bytes"] == 2.0**31
    assert machine.unpack(machine.pack([], now), now) == []


def test_a_job_records_its_machine_off_the_training_thread(
    tmp_path: Path, run_in_thread: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    where: set[str] = set()
    real = machine.rss_bytes

    def traced(*a: Any) -> float | None:
        where.add(threading.current_thread().name)
        return real(*a)

    monkeypatch.setattr(machine, "rss_bytes", traced)
    trainer = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.05}), flush_every=8)
    trainer.machine.sampler.interval = 0.05
    trainer.machine.sampler.batch = 2
    running = run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    wait_for(lambda: system.read(reader.conn).ranks.get(0, None) is not None, what="samples")
    latest = reader.meta(refresh=True).get(system.META_KEY)
    running.stop()
    series = system.read(reader.conn)
    assert list(series.ranks) == [0]
    cols = series.ranks[0].columns
    assert series.ranks[0].length >= 2
    assert {"time", "step", "cpu_percent", "rss_bytes", "host_mem_used_bytes"} <= set(cols)
    assert not system.gpus(list(cols))  # a CPU run: no GPU series
    times = list(cols["time"])
    assert times == sorted(times) and all(not math.isnan(v) for v in cols["rss_bytes"])
    assert isinstance(latest, dict) and latest["rank"] == 0 and latest["rss_bytes"] > 0
    assert where == {"optitui-machine"}  # never the training thread
    reader.close()


def test_system_every_is_checked_and_zero_turns_the_sampler_off(
    tmp_path: Path, run_in_thread: Any
) -> None:
    from optitui.trainer.core.job import JobError

    for bad in (-1, "2", True, float("nan")):
        with pytest.raises(JobError, match="system_every"):
            tiny_job(system_every=bad).validate()
    trainer = make_trainer(tmp_path, tiny_job(system_every=0), flush_every=8)
    running = run_in_thread(trainer)
    reader = RunReader(trainer.paths.root)
    wait_for(lambda: reader.status().step > 20, what="training")
    assert trainer.machine.sampler._thread.ident is None  # never started
    running.stop()
    assert system.read(reader.conn).ranks == {}
    reader.close()


def test_an_own_loop_run_records_its_machine_too(tmp_path: Path) -> None:
    """optitui.watch (and the frameworks' callbacks, which stand on it) starts the same
    sampler: here at its default 2 s, the samples written when the probe closes."""
    import torch
    from torch import nn

    from optitui.trainer.probe.watch import watch

    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(8, 4)
    with watch(opt, model, run_dir=tmp_path / "r", flush_every=4) as probe:
        reader = RunReader(tmp_path / "r")
        deadline = time.monotonic() + 20
        while system.META_KEY not in reader.meta(refresh=True):
            assert time.monotonic() < deadline, "no sample within 20 s"
            loss = model(x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            probe.step(loss)
            time.sleep(0.01)
        thread = probe.trainer.machine.sampler._thread  # type: ignore[union-attr]
        assert thread.is_alive()
    assert not thread.is_alive()  # stopped with the run
    series = system.read(reader.conn)
    assert series.ranks[0].length >= 1 and series.latest()["rss_bytes"] > 0
    reader.close()


def test_which_gpus_a_job_watches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every visible GPU for one process; under torchrun the rank's own; none on the CPU
    (without asking CUDA)."""
    import torch

    from optitui.trainer.core.dist import DistInfo
    from optitui.trainer.loop import machine_record as mr

    asked: list[int] = []
    seen = [{"ordinal": 0, "uuid": "aaaa"}, {"ordinal": 1, "uuid": "bbbb"}]
    monkeypatch.setattr(mr, "cuda_inventory", lambda: asked.append(1) or seen)
    gpu1 = torch.device("cuda", 1)
    assert mr.gpus_to_watch(torch.device("cpu"), None) == [] and asked == []
    assert mr.gpus_to_watch(gpu1, mr.own_gpu(gpu1, None)) == seen
    rank = DistInfo(rank=1, world=2, local_rank=1, backend="nccl")
    assert mr.own_gpu(gpu1, rank) == 1
    assert mr.gpus_to_watch(gpu1, mr.own_gpu(gpu1, rank)) == [seen[1]]
    alone = DistInfo(rank=0, world=1, local_rank=0, backend="nccl")
    assert mr.own_gpu(gpu1, alone) is None


def test_rank_0_names_the_gpus_it_watches(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from optitui.store.records import MetaUpdate, SystemBatch
    from optitui.trainer.loop import machine_record as mr

    seen = [{"ordinal": 0, "uuid": "bbbb", "name": "Fake H200", "total_mib": 143771}]
    monkeypatch.setattr(mr, "cuda_inventory", lambda: seen)
    put: list[Any] = []
    rec = mr.MachineRecord(
        Supervisor(), put.append, torch.device("cuda", 0), None, lambda: 7, nvml=fake_nvml
    )
    rec.sampler.sample()
    rec.stop()
    metas = [r.values for r in put if isinstance(r, MetaUpdate)]
    assert metas[0] == {system.GPUS_META_KEY: seen}
    assert metas[1][system.META_KEY]["gpu0/util_percent"] == 90  # NVML's "bbbb"
    (batch,) = [r for r in put if isinstance(r, SystemBatch)]
    assert batch.rank == 0 and batch.columns["step"] == [7.0]
