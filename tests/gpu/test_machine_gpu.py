"""On a CUDA machine with ``nvidia-ml-py``: the machine sampler's GPU series for real.

Skipped without CUDA or without NVML (``pip install 'optitui[gpu]'``)::

    python -m pytest -q tests/gpu/test_machine_gpu.py
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
pynvml = pytest.importorskip("pynvml", reason="needs nvidia-ml-py (the gpu extra)")


def _sampler() -> tuple[Any, list[Any]]:
    from optitui.store.supervise import Supervisor
    from optitui.trainer.core import machine
    from optitui.trainer.core.device import cuda_inventory

    batches: list[Any] = []
    notes: list[str] = []
    s = machine.Sampler(Supervisor(), emit=batches.append, note=notes.append, gpus=cuda_inventory)
    return s, notes


def test_every_visible_gpu_is_sampled_under_its_cuda_ordinal() -> None:
    from optitui.trainer.core.machine import bare_uuid

    s, notes = _sampler()
    got = s.sample()
    assert s.gpus is not None and notes == []
    for ordinal, handle in s.gpus.handles:  # NVML's GPU is CUDA's device of that number
        nvml_uuid = pynvml.nvmlDeviceGetUUID(handle)
        nvml_uuid = nvml_uuid.decode() if isinstance(nvml_uuid, bytes) else nvml_uuid
        torch_uuid = str(torch.cuda.get_device_properties(ordinal).uuid)
        assert bare_uuid(nvml_uuid) == bare_uuid(torch_uuid)
    s.stop()
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        used, total = got[f"gpu{i}/mem_used_bytes"], got[f"gpu{i}/mem_total_bytes"]
        # the same GPU as CUDA's device i: its size as torch sees it (NVML may count the
        # driver's reserve in it or not)
        assert 0.9 * props.total_memory <= total <= 1.1 * props.total_memory
        assert 0 <= used <= total
        assert 0 <= got[f"gpu{i}/util_percent"] <= 100
        assert 0 < got[f"gpu{i}/temp_c"] < 120
        if f"gpu{i}/power_w" in got:  # some boards do not report it
            assert 0 < got[f"gpu{i}/power_w"] < 2000


def test_the_gpu_is_seen_busy_while_it_computes() -> None:
    s, _ = _sampler()
    s.sample()  # NVML open, the first period read
    a = torch.randn(4096, 4096, device="cuda:0")
    busy: list[float] = []
    end = time.monotonic() + 4.0
    while time.monotonic() < end:
        for _ in range(20):
            a = (a @ a).tanh_()
        torch.cuda.synchronize()
        busy.append(s.sample()["gpu0/util_percent"])
    s.stop()
    assert max(busy) > 50, busy


def test_a_gpu_job_records_its_gpus_series(tmp_path: Path) -> None:
    from optitui.store import system
    from optitui.store.layout import create_run_dir
    from optitui.store.reader import RunReader
    from optitui.trainer.core.job import Job
    from optitui.trainer.loop.trainer import Trainer

    device = torch.device("cuda", 0)
    x, y = torch.randn(256, 32, device=device), torch.randn(256, 1, device=device)
    model = nn.Sequential(nn.Linear(32, 512), nn.ReLU(), nn.Linear(512, 1)).to(device)
    job = Job(
        model=model,
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3),
        train_data=[(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)],
        loss_fn=nn.functional.mse_loss,
        max_steps=3000,
        system_every=0.2,
    )
    paths = create_run_dir(tmp_path, "run", tmp_path / "run")
    assert Trainer(job, device, paths).run() == "finished"
    with RunReader(paths.root) as r:
        series = system.read(r.conn)
        latest = r.meta()[system.META_KEY]
    cols = series.ranks[0].columns
    assert system.gpus(list(cols)) == list(range(torch.cuda.device_count()))
    assert all(not math.isnan(v) and v > 0 for v in cols["gpu0/mem_used_bytes"])
    assert latest["gpu0/mem_total_bytes"] > 0
