"""optitui: watch and steer PyTorch training from the terminal.

``optitui.Job`` is the script contract (see the README); ``optitui.watch``
serves a loop you wrote (``probe.step(loss)`` after each optimizer step).
Importing ``optitui`` itself loads no torch: the viewer and the CLI start fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from optitui.version import __version__

__all__ = ["Job", "StopTraining", "__version__", "log", "watch"]

if TYPE_CHECKING:
    from optitui.trainer.core.job import Job
    from optitui.trainer.probe.watch import StopTraining, watch


def log(**values: Any) -> None:
    """Record values (numbers or 0-d tensors) at the current step of the run this process
    records, from code that holds no probe: ``optitui.log(val_acc=acc)``, or
    ``optitui.log(**{"train/acc": acc})`` for any name. Nothing when no run is recorded."""
    watch = sys.modules.get("optitui.trainer.probe.watch")  # no probe without it: no torch
    if watch is None:
        return
    probes = watch.PROBES.open_probes()
    if probes:
        probes[-1].log(**values)


def __getattr__(name: str) -> Any:
    if name == "Job":
        from optitui.trainer.core.job import Job

        return Job
    if name in ("watch", "StopTraining"):
        from optitui.trainer.probe import watch

        return getattr(watch, name)
    raise AttributeError(f"module 'optitui' has no attribute {name!r}")
