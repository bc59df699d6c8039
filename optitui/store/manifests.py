"""Checkpoint manifests, read without torch: what a viewer lists and picks from.

A checkpoint is ``ID.pt`` (the state, written by the job) and ``ID.json``, this
manifest, written last. Only a manifest whose state file exists with the
recorded size is listed; see ``optitui.trainer.checkpoint`` for the writing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

FORMAT = "optitui-checkpoint"
VERSION = 1
REASONS = ("manual", "periodic", "best", "before-restore", "failure")


class CheckpointError(Exception):
    """A checkpoint that cannot be written, read or used here; nothing was changed."""


@dataclass(frozen=True)
class Manifest:
    id: str
    step: int
    epoch: int
    loss: float | None
    val_loss: float | None
    time: float
    reason: str
    tag: str | None
    file: str
    size: int
    sha256: str
    optimizer: str
    format: str = FORMAT
    version: int = VERSION


def read_manifest(path: Path) -> Manifest | None:
    try:
        d = json.loads(path.read_text())
        m = Manifest(**d)
    except (OSError, ValueError, TypeError):
        return None
    if m.format != FORMAT or m.id != path.stem or m.file != f"{m.id}.pt":
        return None
    state = path.with_name(m.file)
    try:
        if state.stat().st_size != m.size:
            return None
    except OSError:
        return None
    return m


def listing(folder: Path) -> list[Manifest]:
    """Every complete checkpoint, oldest first. Files without a valid manifest are not listed."""
    if not folder.is_dir():
        return []
    found = [m for p in folder.glob("*.json") if (m := read_manifest(p)) is not None]
    return sorted(found, key=lambda m: (m.time, m.id))


def find(folder: Path, ref: str) -> Manifest:
    """A checkpoint by id, unique id prefix, step number, or ``latest``."""
    found = listing(folder)
    if not found:
        raise CheckpointError("this run has no checkpoints")
    if ref == "latest":
        return found[-1]
    exact = [m for m in found if m.id == ref]
    hits = exact or [m for m in found if m.id.startswith(ref)]
    if not hits and ref.isdigit():
        hits = [m for m in found if m.step == int(ref)]
    if len(hits) == 1 or (hits and len({m.step for m in hits}) == 1):
        return hits[-1]
    if not hits:
        raise CheckpointError(f"no checkpoint {ref!r}; have: {', '.join(m.id for m in found)}")
    raise CheckpointError(f"{ref!r} matches {len(hits)} checkpoints; give more of the id")
