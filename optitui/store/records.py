"""What a job sends to its run store. Plain, torch-free values only."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


def now() -> float:
    return time.time()


@dataclass(frozen=True)
class MetricBatch:
    """Consecutive steps as columns; ``columns['step']`` is required."""

    columns: dict[str, list[float]]


@dataclass(frozen=True)
class LoggedBatch:
    """Values the user logged at other times than a step: columns ``step``, ``epoch``,
    ``time`` and one per metric (NaN where a log call did not name it)."""

    columns: dict[str, list[float]]


@dataclass(frozen=True)
class SystemBatch:
    """Samples of the machine taken by one rank, as columns (names in
    :mod:`optitui.store.system`); ``columns['time']`` is required."""

    rank: int
    columns: dict[str, list[float]]


@dataclass(frozen=True)
class ValRecord:
    step: int
    epoch: int
    loss: float
    time: float = field(default_factory=now)


@dataclass(frozen=True)
class Event:
    step: int
    kind: str
    message: str
    data: dict[str, Any] | None = None
    time: float = field(default_factory=now)


@dataclass(frozen=True)
class Outcome:
    """The answer to one command: applied at ``step``, or rejected with ``reason``."""

    id: str
    kind: str
    payload: str
    applied: bool
    step: int
    reason: str | None = None
    time: float = field(default_factory=now)


@dataclass(frozen=True)
class GroupSnapshot:
    step: int
    groups: list[dict[str, Any]]
    time: float = field(default_factory=now)


@dataclass(frozen=True)
class StatusUpdate:
    state: str
    step: int
    epoch: int
    steps_per_s: float | None = None
    samples_per_s: float | None = None
    device_mem: int | None = None
    last_record: float | None = None
    message: str | None = None


@dataclass(frozen=True)
class RangeTestUpdate:
    """The whole state of one LR range test so far (rewritten in place)."""

    id: str
    step: int
    status: str
    config: dict[str, Any]
    data: dict[str, Any]
    suggestions: list[dict[str, Any]] | None = None
    message: str | None = None
    time: float = field(default_factory=now)


@dataclass(frozen=True)
class RaceUpdate:
    """The whole state of one optimizer race so far (rewritten in place)."""

    id: str
    step: int
    status: str  # running done cancelled failed
    config: dict[str, Any]  # steps, val, group, candidates (0 = current)
    data: dict[str, Any]  # per candidate: losses, smoothed, state, val; timings
    results: list[dict[str, Any]] | None = None  # the ranked table, once ended
    message: str | None = None
    time: float = field(default_factory=now)


@dataclass(frozen=True)
class MetaUpdate:
    values: dict[str, Any]


Record = (
    MetricBatch
    | LoggedBatch
    | SystemBatch
    | ValRecord
    | Event
    | Outcome
    | GroupSnapshot
    | StatusUpdate
    | MetaUpdate
    | RangeTestUpdate
    | RaceUpdate
)
