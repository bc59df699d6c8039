"""optitui: watch and steer PyTorch training from the terminal.

``optitui.Job`` is the script contract (see the README); ``optitui.watch``
serves a loop you wrote (``probe.step(loss)`` after each optimizer step).
Importing ``optitui`` itself loads no torch: the viewer and the CLI start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optitui.version import __version__

__all__ = ["Job", "StopTraining", "__version__", "watch"]

if TYPE_CHECKING:
    from optitui.trainer.core.job import Job
    from optitui.trainer.probe.watch import StopTraining, watch


def __getattr__(name: str) -> Any:
    if name == "Job":
        from optitui.trainer.core.job import Job

        return Job
    if name in ("watch", "StopTraining"):
        from optitui.trainer.probe import watch

        return getattr(watch, name)
    raise AttributeError(f"module 'optitui' has no attribute {name!r}")
