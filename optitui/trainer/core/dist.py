"""torch.distributed: every rank applies every command at the same step.

Rank 0 alone owns the run store and reads commands. Every ``sync_every`` steps
(and while paused) the ranks meet once: an all-gather of each rank's buffered
losses and step statistics (so the reported loss is the mean over ranks and a
straggler shows), and a broadcast of rank 0's pending commands and stop
decision. Between those steps nothing is exchanged beyond what DDP itself does.
Decisions that follow from the data (the divergence guard, the range test's
stopping and suggestions) are computed from the same all-reduced numbers on
every rank, so they agree without further messages.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from optitui.trainer.core.device import DeviceError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world: int
    local_rank: int
    backend: str

    @property
    def leader(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def local_ranks() -> tuple[int, int]:
    """(LOCAL_RANK, LOCAL_WORLD_SIZE) as torchrun announced them ((0, 1) when it did not)."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:
        return 0, 1


def rank_device(spec: str, local_rank: int, local_world: int) -> str:
    """This rank's ``--device``: ``auto`` and ``cuda`` become the rank's own GPU
    (``cuda:LOCAL_RANK``, as ``set_device(local_rank)`` in every torchrun script);
    one ``cuda:N`` for several ranks on this machine is refused, since every rank
    would train on that one GPU (and NCCL refuses a GPU shared by two ranks)."""
    s = spec.strip().lower()
    if s in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank}"
    if s.startswith("cuda:") and local_world > 1:
        raise DeviceError(
            f"--device {spec}: under torchrun each of this machine's {local_world} ranks uses "
            "its own GPU (cuda:LOCAL_RANK); one cuda:N would put them all on one GPU. Use "
            "--device cuda (or auto), and CUDA_VISIBLE_DEVICES to choose which GPUs"
        )
    return spec


def backend_for(device: torch.device) -> str:
    """NCCL for a CUDA (or ROCm) device, gloo for the CPU and anything else."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_from_env(device: torch.device, timeout_s: float = 120.0) -> DistInfo | None:
    """Join the process group torchrun set up, with the backend the rank's ``device``
    needs (None when not launched by torchrun). ``device`` is already selected
    (:func:`~optitui.trainer.core.device.select`), so NCCL binds to it."""
    if not launched_by_torchrun():
        return None
    world = int(os.environ["WORLD_SIZE"])
    local, _ = local_ranks()
    backend = backend_for(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(dist.get_rank(), world, local, str(dist.get_backend()))


def from_process_group() -> DistInfo | None:
    """The process group a framework or the user's script already set up (None when
    there is none, or only one rank)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, str(dist.get_backend()))


def env_rank() -> int:
    """This process's rank as torchrun announced it (0 when it did not)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def comm_device(device: torch.device) -> torch.device:
    """Where a collective's tensors go: the job's own device under NCCL (never the
    current CUDA device, cuda:0 in a script that did not call ``set_device``), the
    CPU under gloo."""
    return torch.device("cpu") if str(dist.get_backend()) == "gloo" else device


def broadcast_object(obj: Any, device: torch.device) -> Any:
    """Rank 0's ``obj`` on every rank (pickled through ``device`` under NCCL)."""
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=comm_device(device))
    return box[0]


def all_gather_objects(obj: Any, device: torch.device) -> list[Any]:
    """Every rank's ``obj`` (tensors, numbers, strings, lists, dicts), in rank order.

    Serialised with ``torch.save`` and read back with ``weights_only=True``; the bytes
    travel through ``device`` under NCCL (``all_gather_object`` would use the current
    CUDA device, cuda:0 in a script that never called ``set_device``)."""
    dev = comm_device(device)
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8).to(dev)
    world = dist.get_world_size()
    size = torch.tensor([data.numel()], device=dev, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    lengths = [int(n) for n in torch.cat(sizes).tolist()]  # one read: a rare exchange
    padded = torch.zeros(max(lengths), dtype=torch.uint8, device=dev)
    padded[: data.numel()] = data
    out = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(out, padded)
    return [
        torch.load(io.BytesIO(t[:n].cpu().numpy().tobytes()), weights_only=True)
        for t, n in zip(out, lengths, strict=True)
    ]


#: why optitui gathers no sharded state: what a refused command or setting says
SHARDED_REASON = (
    "its checkpoints, the range test and divergence rollback copy the whole state on "
    "rank 0, and gathering a sharded state is a collective of every rank: not available "
    "(save with torch.distributed.checkpoint in your script)"
)


def sharded_by(model: nn.Module, optimizer: Any) -> str | None:
    """What shards this job's state across ranks (FSDP, FSDP2, DTensor parameters), or
    None. Looks only at the classes the script has imported (FSDP's import is slow)."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    if fsdp is not None:
        fsdp1 = getattr(fsdp, "FullyShardedDataParallel", None)
        fsdp2 = getattr(fsdp, "FSDPModule", None)
        for m in model.modules():
            if fsdp1 is not None and isinstance(m, fsdp1):
                return "FSDP (FullyShardedDataParallel)"
            if fsdp2 is not None and isinstance(m, fsdp2):
                return "FSDP2 (fully_shard)"
    flat = getattr(sys.modules.get("torch.distributed.fsdp._flat_param"), "FlatParameter", None)
    dtensor = getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)
    for group in optimizer.param_groups:
        for p in group["params"]:
            if flat is not None and isinstance(p, flat):
                return "FSDP (FullyShardedDataParallel)"
            if dtensor is not None and isinstance(p, dtensor):
                return "DTensor parameters (FSDP2 or tensor parallel)"
    return None


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` (rebuilt after a freeze changes its params)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def no_sync(net: nn.Module, skip: bool) -> contextlib.AbstractContextManager[Any]:
    """While ``skip``: no gradient all-reduce for this forward and backward (DDP and
    FSDP's ``no_sync``, FSDP2's ``set_requires_gradient_sync``); else nothing."""
    if not skip:
        return contextlib.nullcontext()
    ctx = getattr(net, "no_sync", None)
    if callable(ctx):
        return ctx()  # type: ignore[no-any-return]
    toggle = getattr(net, "set_requires_gradient_sync", None)
    if callable(toggle):
        return _gradient_sync_off(toggle)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _gradient_sync_off(toggle: Any) -> Iterator[None]:
    toggle(False)
    try:
        yield
    finally:
        toggle(True)


#: what a DataLoader keeps from its construction besides its dataset, batch size and
#: sampler (only those this torch's DataLoader takes are passed on)
_LOADER_ARGS = (
    "num_workers",
    "collate_fn",
    "pin_memory",
    "drop_last",
    "timeout",
    "worker_init_fn",
    "multiprocessing_context",
    "generator",
    "prefetch_factor",
    "persistent_workers",
    "pin_memory_device",
    "in_order",
)


def shard(data: Any, info: DistInfo) -> Any:
    """A DataLoader over a map-style dataset gets a DistributedSampler if it has none."""
    if not isinstance(data, DataLoader) or isinstance(data.sampler, DistributedSampler):
        return data
    if not hasattr(data.dataset, "__len__") or data.batch_sampler is None:
        return data  # iterable-style datasets shard themselves
    if isinstance(getattr(data.batch_sampler, "sampler", None), DistributedSampler):
        return data
    shuffle = isinstance(data.sampler, RandomSampler)
    seed = 0
    if shuffle and data.generator is not None:
        seed = int(data.generator.initial_seed()) % 2**31
    sampler: DistributedSampler[Any] = DistributedSampler(
        data.dataset,
        num_replicas=info.world,
        rank=info.rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=data.drop_last,
    )
    known = inspect.signature(DataLoader.__init__).parameters
    kept = {k: getattr(data, k) for k in _LOADER_ARGS if k in known and hasattr(data, k)}
    return DataLoader(data.dataset, batch_size=data.batch_size, sampler=sampler, **kept)


def set_epoch(data: Any, epoch: int) -> None:
    sampler = getattr(data, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def gather_losses(
    losses: torch.Tensor, stats: list[float], device: torch.device
) -> tuple[list[float], list[list[float]]]:
    """One all-gather: the mean of each step's loss over ranks, and every rank's stats."""
    world = dist.get_world_size()
    device = comm_device(device)
    local = torch.cat([losses.float().to(device), torch.tensor(stats, device=device)])
    out = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(out, local)
    table = torch.stack(out).cpu()
    n = losses.numel()
    mean = table[:, :n].double().mean(dim=0).tolist()
    return [float(x) for x in mean], table[:, n:].tolist()


def mean_scalar(value: torch.Tensor) -> float:
    """The mean of a scalar over ranks (a range test iteration, a validation)."""
    t = value.detach().float().reshape(1).to(comm_device(value.device), copy=True)
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def any_rank(flag: bool, device: torch.device) -> bool:
    t = torch.tensor([1.0 if flag else 0.0], device=comm_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
