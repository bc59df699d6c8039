"""Choosing the device and moving batches onto it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import torch

_SPEC = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceError(ValueError):
    """A --device value that names no usable device here."""


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else must exist here."""
    s = spec.strip().lower()
    if not _SPEC.match(s):
        raise DeviceError(f"--device {spec!r}: expected auto, cpu, cuda, cuda:N or mps")
    if s == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(s)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {spec}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= count:
            raise DeviceError(f"--device {spec}: this machine has {count} CUDA device(s)")
        return torch.device("cuda", index)
    if dev.type == "mps" and not _mps_available():
        raise DeviceError(f"--device {spec}: MPS is not available on this machine")
    return dev


def select(device: torch.device) -> None:
    """Make ``device`` the current CUDA device, so that pin-memory threads, NCCL and
    code that says ``"cuda"`` use it rather than opening a context on GPU 0."""
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside tuples, lists, dicts and namedtuples to ``device``.

    ``non_blocking`` lets a copy from pinned memory overlap with compute; on the
    CPU a tensor already in place is returned as is.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple):
        moved = [to_device(b, device) for b in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else tuple(moved)
    if isinstance(batch, list):
        return [to_device(b, device) for b in batch]
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def batch_size(batch: Any) -> int:
    """Samples in a batch: the leading size of its first tensor (0 when there is none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, list | tuple):
        for b in batch:
            n = batch_size(b)
            if n:
                return n
    if isinstance(batch, Mapping):
        for b in batch.values():
            n = batch_size(b)
            if n:
                return n
    return 0


#: what allocators say when they run out: CUDA and HIP paths that predate
#: torch.OutOfMemoryError, MPS, XPU, and the CPU allocator
_OOM_WORDS = ("out of memory", "can't allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """``torch.OutOfMemoryError``, or a RuntimeError whose message says memory ran out."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    return any(w in text for w in _OOM_WORDS)


def memory_allocated(device: torch.device) -> int | None:
    """Bytes allocated on an accelerator (a host-side counter: no sync); None on CPU."""
    return _memory(device, torch.cuda.memory_allocated, "current_allocated_memory")


def memory_reserved(device: torch.device) -> int | None:
    """Bytes the caching allocator holds on an accelerator (allocated plus cached, what
    nvidia-smi counts for this process, less the CUDA context); None on CPU."""
    return _memory(device, torch.cuda.memory_reserved, "driver_allocated_memory")


def _memory(device: torch.device, cuda: Any, mps: str) -> int | None:
    if device.type == "cuda":
        return int(cuda(device))
    if device.type == "mps":
        try:
            return int(getattr(torch.mps, mps)())
        except Exception:
            return None
    return None


def cuda_inventory() -> list[dict[str, Any]]:
    """Each CUDA ordinal as this process sees it (CUDA_VISIBLE_DEVICES and
    CUDA_DEVICE_ORDER applied, MIG instances as CUDA names them): its UUID, name and
    size. Reads device properties only: no context is created on any GPU."""
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        out.append(
            {
                "ordinal": i,
                "uuid": str(getattr(props, "uuid", "")),
                "name": props.name,
                "total_mib": int(props.total_memory) // 2**20,
            }
        )
    return out


if __name__ == "__main__":  # `python -m optitui.trainer.core.device`: what the device picker reads
    print(json.dumps(cuda_inventory()))
