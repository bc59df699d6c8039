"""torch.distributed paths that only go wrong on real clusters, checked in one process.

A one-rank gloo process group stands in for torchrun's: DDP's all-reduces are
counted with a comm hook, and what a rank would do with its peers is checked
from the calls it makes (devices, order of collectives, per-rank RNG states).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
from jobs import make_trainer, regression_data, tiny_job
from torch.utils.data import DataLoader

from optitui.trainer import dist
from optitui.trainer.dist import DistInfo


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
