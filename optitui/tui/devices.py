"""Which accelerators this machine has, numbered as CUDA numbers them.

``nvidia-smi`` lists GPUs in PCI order with its own indices; ``--device cuda:N``
is CUDA's ordinal, which ``CUDA_VISIBLE_DEVICES`` filters and reorders and
``CUDA_DEVICE_ORDER`` (fastest first by default) sorts, and under MIG names
instances that ``nvidia-smi --query-gpu`` does not list. So CUDA's own view
comes first: a short subprocess (``python -m optitui.trainer.core.device``: the viewer
never imports torch) lists each ordinal's UUID, name and size, and nvidia-smi's
rows are matched to them by UUID for the memory in use. When that subprocess
cannot run, ``CUDA_VISIBLE_DEVICES`` is applied to nvidia-smi's list, and only a
mapping that is certain is offered. ROCm machines (no nvidia-smi) get CUDA's view
without the memory in use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Device:
    spec: str  # what --device takes, e.g. "cuda:1": CUDA's ordinal
    name: str
    used_mib: int | None  # nvidia-smi: memory in use on the GPU, by every process
    total_mib: int | None
    uuid: str = ""
    note: str = ""  # e.g. "MIG instance"

    def describe(self) -> str:
        mem = ""
        if self.used_mib is not None and self.total_mib:
            mem = f"  {self.used_mib:,} / {self.total_mib:,} MiB in use (all processes, nvidia-smi)"
        elif self.total_mib:
            mem = f"  {self.total_mib:,} MiB"
        note = f"  [{self.note}]" if self.note else ""
        return f"{self.spec:<8} {self.name}{mem}{note}"


@dataclass(frozen=True)
class Found:
    devices: list[Device]
    note: str | None = None  # why there is no choice to offer, when there is a reason


SMI_QUERY = "--query-gpu=index,uuid,name,memory.used,memory.total"


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def parse_nvidia_smi(text: str) -> list[Device]:
    """Rows of ``index, uuid, name, memory.used, memory.total`` (csv, no header, no units);
    ``spec`` is nvidia-smi's own index (PCI order) until matched to CUDA's ordinals."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5 or not parts[0].isdigit():
            continue
        index, uuid, name, used, total = parts
        out.append(Device(f"cuda:{index}", name, _int(used), _int(total), uuid))
    return out


def _bare(uuid: str) -> str:
    """A UUID without nvidia-smi's "GPU-" / "MIG-" prefix, lower case (torch prints none)."""
    u = uuid.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if u.startswith(prefix):
            return u[len(prefix) :]
    return u


def match_cuda(smi: list[Device], cuda: Sequence[Mapping[str, object]]) -> list[Device]:
    """CUDA's devices in CUDA's order, with nvidia-smi's memory in use where a UUID matches.

    ``cuda`` holds ``{"ordinal", "uuid", "name", "total_mib"}`` per device, from
    :func:`cuda_view`. A device nvidia-smi does not list by that UUID is a MIG
    instance (or a GPU nvidia-smi cannot see): shown as CUDA sees it."""
    by_uuid = {_bare(d.uuid): d for d in smi if d.uuid}
    out = []
    for c in cuda:
        spec = f"cuda:{c['ordinal']}"
        uuid = str(c.get("uuid") or "")
        total = c.get("total_mib")
        row = by_uuid.get(_bare(uuid)) if uuid else None
        if row is not None:
            out.append(replace(row, spec=spec))
            continue
        name = str(c.get("name") or "?")
        note = "MIG instance" if "MIG" in name or uuid.upper().startswith("MIG-") else ""
        out.append(Device(spec, name, None, total if isinstance(total, int) else None, uuid, note))
    return out


def from_environment(smi: list[Device], env: Mapping[str, str]) -> list[Device] | None:
    """nvidia-smi's GPUs as CUDA will number them, from ``CUDA_VISIBLE_DEVICES`` and
    ``CUDA_DEVICE_ORDER`` alone; None when that cannot be known without CUDA.

    Indices in ``CUDA_VISIBLE_DEVICES`` count in CUDA's order, which is PCI order (that
    of nvidia-smi) only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or when every GPU is the
    same model (fastest first then falls back to PCI order). UUIDs (or unique
    prefixes) are matched as given; MIG names cannot be mapped from ``--query-gpu``.
    CUDA stops at the first entry it cannot use, and so does this."""
    pci_order = env.get("CUDA_DEVICE_ORDER", "").strip().upper() == "PCI_BUS_ID"
    pci_order = pci_order or len({d.name for d in smi}) <= 1
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        chosen = list(smi) if pci_order else None
    else:
        chosen = _visible(smi, visible, pci_order)
    if chosen is None:
        return None
    return [replace(d, spec=f"cuda:{i}") for i, d in enumerate(chosen)]


def _visible(smi: list[Device], visible: str, pci_order: bool) -> list[Device] | None:
    chosen: list[Device] = []
    for token in (t.strip() for t in visible.split(",")):
        if token.lstrip("-").isdigit():
            i = int(token)
            if not pci_order:
                return None
            if not 0 <= i < len(smi):
                break
            found = [smi[i]]
        elif token.upper().startswith("MIG"):
            return None
        else:
            want = _bare(token)
            found = [d for d in smi if want and _bare(d.uuid).startswith(want)]
            if len(found) != 1:
                break
        if found[0] in chosen:
            break
        chosen.append(found[0])
    return chosen


def _smi(timeout: float) -> list[Device] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        res = subprocess.run(
            [exe, SMI_QUERY, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(res.stdout) if res.returncode == 0 else None


def cuda_view(timeout: float = 60.0) -> list[dict[str, object]] | None:
    """Each CUDA ordinal's UUID, name and size, from torch in a subprocess (None when it
    fails: no torch, no driver, too slow)."""
    try:
        res = subprocess.run(
            [sys.executable, "-m", "optitui.trainer.core.device"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        found = json.loads(res.stdout) if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return found if isinstance(found, list) else None


def accelerators(timeout: float = 5.0) -> Found:
    """The devices ``--device cuda:N`` can name, with nvidia-smi's memory in use."""
    smi = _smi(timeout)
    rocm = smi is None and shutil.which("rocm-smi") is not None
    if smi is None and not rocm:
        return Found([])  # no accelerator tools: a CPU box, or MPS
    if smi is not None and len(smi) < 2 and "CUDA_VISIBLE_DEVICES" not in os.environ:
        return Found([])  # one GPU: nothing to choose (and no torch to start)
    cuda = cuda_view()
    if cuda is not None:
        return Found(match_cuda(smi or [], cuda))
    mapped = None if smi is None else from_environment(smi, os.environ)
    if mapped is None:
        return Found(
            [],
            "several GPUs, but their CUDA numbering could not be read: "
            "choose one with --device cuda:N",
        )
    return Found(mapped)
