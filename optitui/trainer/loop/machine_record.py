"""Where the machine's samples go: rank 0's straight to the store, the other ranks'
through the flush's all-gather to rank 0, which records them under their rank."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from optitui.store.records import Event, MetaUpdate, Record, SystemBatch
from optitui.store.supervise import Supervisor
from optitui.store.system import GPUS_META_KEY, META_KEY
from optitui.trainer.core import machine
from optitui.trainer.core.device import cuda_inventory
from optitui.trainer.core.dist import DistInfo


def own_gpu(device: torch.device, info: DistInfo | None) -> int | None:
    """Under torchrun, the ordinal of the rank's own GPU (read on the training thread:
    the current device is per thread); None when every visible GPU is watched."""
    if device.type != "cuda" or info is None or info.world < 2:
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


def gpus_to_watch(device: torch.device, own: int | None) -> list[dict[str, Any]]:
    """The GPUs a job samples: on a CUDA device every GPU the process can see, or only
    ``own``; none for a CPU (or MPS) run."""
    if device.type != "cuda":
        return []
    found = cuda_inventory()
    return found if own is None else [d for d in found if d["ordinal"] == own]


class MachineRecord:
    """The job's sampler thread and the routes its samples take."""

    def __init__(
        self,
        supervisor: Supervisor,
        put: Callable[[Record], Any],
        device: torch.device,
        info: DistInfo | None,
        step: Callable[[], int],
        **options: Any,
    ) -> None:
        self.rank = 0 if info is None else info.rank
        self._put = put
        self._step = step
        #: the newest sample of every rank, as rank 0 knows it
        self.latest: dict[int, machine.Sample] = {}
        self.outbox: machine.Outbox | None = None
        own = own_gpu(device, info)
        if self.rank == 0:
            emit, show = self._record, self._show
        else:
            self.outbox = machine.Outbox()
            emit, show = _nowhere, self.outbox.emit_one
        self.sampler = machine.Sampler(
            supervisor,
            emit=emit,
            show=show,
            note=self._note,
            step=step,
            gpus=lambda: self._named(gpus_to_watch(device, own)),
            **options,
        )

    def start(self) -> None:
        if self.sampler.interval > 0:  # 0: the job asked for no samples
            self.sampler.start()

    def stop(self) -> None:
        self.sampler.stop()

    def _named(self, gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The GPUs to watch, named in the metadata by rank 0 (``system_gpus``: ordinal,
        name, memory, UUID of each)."""
        if self.rank == 0 and gpus:
            self._put(MetaUpdate({GPUS_META_KEY: gpus}))
        return gpus

    def _record(self, columns: machine.Columns) -> None:
        self._put(SystemBatch(0, columns))

    def _show(self, sample: machine.Sample) -> None:
        self.latest[0] = sample
        self._put(MetaUpdate({META_KEY: {**sample, "rank": 0}}))

    def _note(self, text: str) -> None:
        self._put(Event(self._step(), "info", text))

    # -- under torch.distributed, at each flush -----------------------------------------
    def packed(self, now: float) -> list[float]:
        """This rank's samples since the last flush, for the all-gather (rank 0's own
        went to the store already: only padding)."""
        return machine.pack(self.outbox.take() if self.outbox else [], now)

    def absorb(self, rows: Sequence[Sequence[float]], now: float) -> None:
        """On rank 0: record what every other rank packed (``rows`` in rank order)."""
        if self.rank != 0:
            return
        for r, values in enumerate(rows):
            if r == 0:
                continue
            samples = machine.unpack(values, now)
            if samples:
                self.latest[r] = samples[-1]
                self._put(SystemBatch(r, machine.columns(samples)))

    def of_rank(self, rank: int) -> dict[str, float] | None:
        """The newest sample of ``rank`` as plain numbers (for the ranks' metadata)."""
        got = self.latest.get(rank)
        return None if got is None else {k: v for k, v in got.items() if not math.isnan(v)}


def _nowhere(columns: machine.Columns) -> None:
    """A rank other than 0 sends its samples one by one through its outbox."""
