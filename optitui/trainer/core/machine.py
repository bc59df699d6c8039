"""The machine, sampled on a thread of its own: the process, the host, each GPU.

Every ``interval`` seconds the sampler reads the job's process CPU time and resident
memory, the host's memory, and for each GPU it watches NVML's utilisation, memory,
temperature and power (``nvidia-ml-py``, the ``gpu`` extra). It never runs on the
training thread and never touches torch tensors: the training thread pays nothing for
it. Samples leave in batches through ``emit`` (the series named in
:mod:`optitui.store.system`); the newest one goes to ``show`` at once. A field that
cannot be read here (no NVML, no GPU, no ``/proc``) is absent, never a guess.

Under torchrun every rank samples its own GPU; ranks other than 0 keep their samples
for the next flush, where they travel to rank 0 in the all-gather the ranks do anyway
(:func:`pack`, :func:`unpack`).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from optitui.store.supervise import Supervisor
from optitui.store.system import GPU_SERIES, HOST_SERIES, INTERVAL_S, gpu_series

Sample = dict[str, float]
Columns = dict[str, list[float]]

#: samples per batch written to the store (one row of the ``system`` table)
BATCH = 5
#: samples a rank other than 0 keeps between two flushes (the oldest go first)
PACKED_SAMPLES = 16
#: one packed sample: its age at the flush, then these fields (NaN where absent)
PACKED_FIELDS = ("age", "step", *HOST_SERIES, "gpu", *GPU_SERIES)


# -- the process and the host, from /proc (absent elsewhere) ------------------------------
def rss_bytes(statm: str = "/proc/self/statm") -> float | None:
    """The process's resident memory (Linux); None where it cannot be read."""
    try:
        with open(statm) as f:
            return float(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return None


def host_memory(meminfo: str = "/proc/meminfo") -> tuple[float, float] | None:
    """(used, total) bytes of the host's memory, used being total less available
    (Linux); None where it cannot be read."""
    fields: dict[str, float] = {}
    try:
        with open(meminfo) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    fields[key] = float(rest.split()[0]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    if len(fields) < 2:
        return None
    return fields["MemTotal"] - fields["MemAvailable"], fields["MemTotal"]


class CpuClock:
    """The process's CPU time (every thread, user and system) over the wall time since
    the last reading, in % of one core."""

    def __init__(self) -> None:
        self._last = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        t = os.times()
        return t.user + t.system, time.monotonic()

    def percent(self) -> float | None:
        (cpu0, wall0), (cpu1, wall1) = self._last, self._now()
        self._last = (cpu1, wall1)
        if wall1 - wall0 <= 0:
            return None
        return 100.0 * (cpu1 - cpu0) / (wall1 - wall0)


# -- the GPUs, through NVML ---------------------------------------------------------------
def bare_uuid(uuid: str) -> str:
    """A UUID without NVML's "GPU-" / "MIG-" prefix, lower case (torch gives it bare)."""
    u = uuid.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if u.startswith(prefix):
            return u[len(prefix) :]
    return u


def load_nvml() -> ModuleType | None:
    """``pynvml`` (from ``nvidia-ml-py``), or None when it is not installed."""
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


class Gpus:
    """NVML handles of the GPUs to sample, by CUDA ordinal.

    ``wanted`` holds ``{"ordinal", "uuid"}`` per GPU (from
    :func:`~optitui.trainer.core.device.cuda_inventory`: CUDA's numbering, after
    ``CUDA_VISIBLE_DEVICES``). Each is found in NVML by its UUID, since NVML numbers
    GPUs in PCI order, which is not CUDA's. One that cannot be found is not sampled."""

    def __init__(self, nvml: ModuleType, wanted: Sequence[Mapping[str, Any]]) -> None:
        self.nvml = nvml
        self.error: type[BaseException] = getattr(nvml, "NVMLError", Exception)
        nvml.nvmlInit()
        by_uuid: dict[str, Any] = {}
        for i in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            by_uuid[bare_uuid(_text(nvml.nvmlDeviceGetUUID(handle)))] = handle
        self.handles: list[tuple[int, Any]] = []
        self.missing: list[int] = []
        for d in wanted:
            ordinal, uuid = int(d["ordinal"]), str(d.get("uuid") or "")
            handle = by_uuid.get(bare_uuid(uuid)) if uuid else None
            if handle is None and uuid:
                handle = self._by_uuid(uuid)  # a MIG instance is not in the index listing
            if handle is None:
                self.missing.append(ordinal)
            else:
                self.handles.append((ordinal, handle))

    def _by_uuid(self, uuid: str) -> Any:
        for name in (uuid, f"GPU-{bare_uuid(uuid)}", f"MIG-{bare_uuid(uuid)}"):
            try:
                return self.nvml.nvmlDeviceGetHandleByUUID(name)
            except self.error:
                continue
        return None

    def read(self, out: Sample) -> None:
        """Each GPU's fields into ``out``; one NVML cannot report is left out."""
        for ordinal, handle in self.handles:
            for name in GPU_SERIES:
                try:
                    out[gpu_series(ordinal, name)] = self._field(handle, name)
                except self.error:  # not supported here (a MIG instance's utilisation)
                    continue

    def _field(self, handle: Any, name: str) -> float:
        nvml = self.nvml
        if name == "util_percent":
            return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        if name in ("mem_used_bytes", "mem_total_bytes"):
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
            return float(info.used if name == "mem_used_bytes" else info.total)
        if name == "temp_c":
            kind = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
            return float(nvml.nvmlDeviceGetTemperature(handle, kind))
        return float(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0  # milliwatts

    def close(self) -> None:
        with contextlib.suppress(self.error):
            self.nvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- the sampler thread -------------------------------------------------------------------
class Sampler:
    """Samples the machine every ``interval`` seconds on a supervised thread.

    ``gpus()`` says which GPUs to watch (called once, on the sampler's thread; an empty
    list for a CPU run); ``step()`` the optimizer steps done (an int read, no lock);
    ``emit(columns)`` takes a batch, ``show(sample)`` the newest sample, ``note(text)``
    a one-off word for the user (why there are no GPU series). ``nvml`` loads the NVML
    module (None when absent)."""

    def __init__(
        self,
        supervisor: Supervisor,
        *,
        emit: Callable[[Columns], None],
        show: Callable[[Sample], None] | None = None,
        note: Callable[[str], None] | None = None,
        step: Callable[[], int] = lambda: 0,
        gpus: Callable[[], Sequence[Mapping[str, Any]]] = list,
        nvml: Callable[[], ModuleType | None] = load_nvml,
        interval: float = INTERVAL_S,
        batch: int = BATCH,
    ) -> None:
        self._emit, self._show, self._note = emit, show, note
        self._step, self._gpus_wanted, self._load = step, gpus, nvml
        self.interval, self.batch = interval, batch
        self.gpus: Gpus | None = None
        self._gpus_opened = False
        self._cpu = CpuClock()
        self._buf: list[Sample] = []
        self.latest: Sample | None = None
        self._stop = threading.Event()
        self._thread = supervisor.thread("optitui-machine", self._run)
        self._started = False

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> Sample:
        """Take one sample now; emit the batch when it is full."""
        if not self._gpus_opened:
            self._gpus_opened = True  # tried once: a missing driver is not retried
            self.gpus = self._open_gpus()
        s: Sample = {"time": time.time(), "step": float(self._step())}
        cpu = self._cpu.percent()
        if cpu is not None:
            s["cpu_percent"] = cpu
        rss = rss_bytes()
        if rss is not None:
            s["rss_bytes"] = rss
        host = host_memory()
        if host is not None:
            s["host_mem_used_bytes"], s["host_mem_total_bytes"] = host
        if self.gpus is not None:
            self.gpus.read(s)
        self.latest = s
        self._buf.append(s)
        if self._show is not None:
            self._show(s)
        if len(self._buf) >= self.batch:
            self._flush()
        return s

    def _open_gpus(self) -> Gpus | None:
        wanted = list(self._gpus_wanted())
        if not wanted:
            return None
        nvml = self._load()
        if nvml is None:
            self._say(
                "GPU series not recorded: NVML is not installed "
                "(pip install 'optitui[gpu]' adds nvidia-ml-py)"
            )
            return None
        try:
            gpus = Gpus(nvml, wanted)
        except Exception as exc:  # no driver, an NVML too old for this call
            self._say(f"GPU series not recorded: NVML could not start ({exc})")
            return None
        if gpus.missing:
            found = ", ".join(f"cuda:{o}" for o in gpus.missing)
            self._say(f"GPU series not recorded for {found}: NVML does not list its UUID")
        return gpus

    def _say(self, text: str) -> None:
        if self._note is not None:
            self._note(text)
        else:
            print(f"optitui: {text}", file=sys.stderr)

    def _flush(self) -> None:
        batch, self._buf = self._buf, []
        if batch:
            self._emit(columns(batch))

    def stop(self) -> None:
        """Stop sampling and emit what is buffered (once the thread is gone)."""
        self._stop.set()
        if self._started and self._thread.is_alive():
            self._thread.join(self.interval + 5.0)
            if self._thread.is_alive():  # stuck in a driver call: leave it be
                return
        self._flush()
        if self.gpus is not None:
            self.gpus.close()
            self.gpus = None


def columns(samples: Sequence[Sample]) -> Columns:
    """Samples as columns: every name any of them has, NaN where one lacks it."""
    names: list[str] = []
    for s in samples:
        names += [k for k in s if k not in names]
    return {k: [s.get(k, math.nan) for s in samples] for k in names}


# -- ranks other than 0: samples travel in the flush's all-gather ------------------------
class Outbox:
    """A rank's samples waiting for the next flush (the newest ``PACKED_SAMPLES``)."""

    def __init__(self) -> None:
        self.samples: deque[Sample] = deque(maxlen=PACKED_SAMPLES)

    def emit_one(self, sample: Sample) -> None:
        self.samples.append(sample)  # from the sampler's thread; popped at the flush

    def take(self) -> list[Sample]:
        out = []
        while self.samples:
            out.append(self.samples.popleft())
        return out


def pack(samples: Sequence[Sample], now: float) -> list[float]:
    """``PACKED_SAMPLES`` samples as floats of fixed length (NaN where absent). Times travel
    as ages, which float32 holds to the millisecond and another host's clock cannot skew."""
    out: list[float] = []
    for s in list(samples)[-PACKED_SAMPLES:]:
        ordinals = sorted({k.split("/")[0] for k in s if k.startswith("gpu") and "/" in k})
        gpu = ordinals[0] if ordinals else None
        row = [now - s["time"], s.get("step", math.nan)]
        row += [s.get(k, math.nan) for k in HOST_SERIES]
        row.append(float(gpu[3:]) if gpu else math.nan)
        row += [s.get(f"{gpu}/{k}", math.nan) if gpu else math.nan for k in GPU_SERIES]
        out += row
    out += [math.nan] * (PACKED_SAMPLES * len(PACKED_FIELDS) - len(out))
    return out


def unpack(values: Sequence[float], now: float) -> list[Sample]:
    """The samples :func:`pack` packed, timed by this host's clock."""
    width = len(PACKED_FIELDS)
    out = []
    for i in range(0, len(values) - width + 1, width):
        row = dict(zip(PACKED_FIELDS, values[i : i + width], strict=True))
        if math.isnan(row["age"]):
            continue
        s: Sample = {"time": now - row["age"], "step": row["step"]}
        s.update({k: row[k] for k in HOST_SERIES if not math.isnan(row[k])})
        if not math.isnan(row["gpu"]):
            ordinal = int(row["gpu"])
            s.update({gpu_series(ordinal, k): row[k] for k in GPU_SERIES if not math.isnan(row[k])})
        out.append(s)
    return out
