"""A probe as the parts it is made of see it: its trainer, the scheduler it holds, the
range test in flight. They take this, not the :class:`~optitui.trainer.probe.watch.Probe`,
so none of them imports the module that puts them together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from optitui.trainer.control.rangetest import RangeTest
from optitui.trainer.control.saver import Answer
from optitui.trainer.core.training import Training


class CheckpointBackend(Protocol):
    """A framework's own checkpoint format (Lightning, HF), used for save and restore."""

    def save(self, reason: str, tag: str | None, answer: Answer | None = None) -> str:
        """Save (now or at the end of this step); return the checkpoint's id. Call
        ``answer`` once the checkpoint is on disk (its id), or when it cannot be (why).
        Under torch.distributed it is called on every rank at the same step."""
        ...

    def find(self, ref: str) -> Path:
        """The checkpoint ``ref`` names ("latest", an id, a step); CheckpointError if none."""
        ...

    def restore(self, ref: str) -> str:
        """Load a checkpoint into the model, optimizer and scheduler; return its id.
        Raises CheckpointError when it cannot, leaving everything as it was."""
        ...


class Probing(Protocol):
    """The probe that owns a loop trainer, a held scheduler and a range test in flight."""

    @property
    def mode(self) -> str:
        """Who made it: "watch", "zero-code", "lightning", "transformers"."""
        ...

    @property
    def backend(self) -> CheckpointBackend | None:
        """A framework's own checkpoint format, when it owns the checkpoints."""
        ...

    @property
    def trainer(self) -> Training | None:
        """The run it serves (None on a rank that records nothing)."""
        ...

    @property
    def closed(self) -> bool: ...

    @property
    def testing(self) -> bool:
        """A range test is running over the loop's steps."""
        ...

    def start_test(self, test: RangeTest) -> None:
        """Run ``test`` over the loop's next steps (the loop trainer asks, at a boundary)."""
        ...

    def test_ended(self) -> None:
        """The range test in flight is over: the loop's steps train again."""
        ...
