"""Which accelerators this machine has, asked without importing torch.

The viewer stays torch-free, so devices come from ``nvidia-smi`` (memory in
use included). Machines without it, or with at most one device, get no
picker: ``--device auto`` is then the only sensible choice.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Device:
    spec: str  # what --device takes, e.g. "cuda:1"
    name: str
    used_mib: int | None
    total_mib: int | None

    def describe(self) -> str:
        mem = ""
        if self.used_mib is not None and self.total_mib:
            mem = f"  {self.used_mib:,} / {self.total_mib:,} MiB in use"
        return f"{self.spec:<8} {self.name}{mem}"


def parse_nvidia_smi(text: str) -> list[Device]:
    """Rows of ``index, name, memory.used, memory.total`` (csv, no header, no units)."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        used = int(parts[2]) if parts[2].isdigit() else None
        total = int(parts[3]) if parts[3].isdigit() else None
        out.append(Device(f"cuda:{parts[0]}", parts[1], used, total))
    return out


def accelerators(timeout: float = 5.0) -> list[Device]:
    """CUDA devices as nvidia-smi lists them; [] when it is missing or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        res = subprocess.run(
            [
                exe,
                "--query-gpu=index,name,memory.used,memory.total",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(res.stdout) if res.returncode == 0 else []
