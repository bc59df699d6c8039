"""optitui: watch and steer PyTorch training from the terminal.

``optitui.Job`` is the script contract (see the README). Importing
``optitui`` itself loads no torch: the viewer and the CLI start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Job", "__version__"]

if TYPE_CHECKING:
    from optitui.trainer.job import Job


def __getattr__(name: str) -> Any:
    if name == "Job":
        from optitui.trainer.job import Job

        return Job
    raise AttributeError(f"module 'optitui' has no attribute {name!r}")
