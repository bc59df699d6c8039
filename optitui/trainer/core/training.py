"""A run in progress as the parts around the loop see it: what a snapshot copies and
puts back, and what a command, a ramp or an optimizer swap reads of the groups.

The :class:`~optitui.trainer.loop.trainer.Trainer` implements it (and so the probe's
loop, a Trainer whose loop is the user's). Everything here is typed by what lies below
the loop, so the modules that take a ``Training`` never import the loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch import nn
from torch.optim import Optimizer

from optitui.store.writer import NullRecorder, Recorder
from optitui.trainer.core.amp import Amp
from optitui.trainer.core.dist import DistInfo
from optitui.trainer.core.job import Job
from optitui.trainer.core.lookahead import Lookahead
from optitui.trainer.core.lr import LrControl


class Training(Protocol):
    """The state a step depends on, and where the run's records go."""

    job: Job
    model: nn.Module
    #: the param groups every command edits, and their lr control (multipliers, scheduler)
    optimizer: Optimizer
    lr: LrControl
    amp: Amp
    clip: float | None
    lookahead: Lookahead | None
    step: int
    epoch: int
    device: torch.device
    dist: DistInfo | None
    recorder: Recorder | NullRecorder
    #: the data position: the epoch's iterator, the batches taken from it, and the RNG
    #: states it was created under (a checkpoint replays them)
    data_iter: Iterator[Any] | None
    epoch_batches: int
    epoch_rng: dict[str, Any] | None
