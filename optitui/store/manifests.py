"""Checkpoint manifests, read without torch: what a viewer lists and picks from.

A checkpoint is ``ID.pt`` (the state, written by the job) and ``ID.json``, this
manifest, written last. Only a manifest whose state file exists with the
recorded size is listed; see ``optitui.trainer.core.checkpoint`` for the writing.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_MANIFEST_BYTES = 64 * 1024

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


def real_dir(path: Path) -> bool:
    """A folder itself, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def read_regular(path: Path, limit: int | None = None) -> bytes:
    """A regular file's bytes, never through a symlink (``O_NOFOLLOW``) nor from a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(f"{path.name} is not a regular file")
        if limit is not None and st.st_size > limit:
            raise ValueError(f"{path.name} is {st.st_size} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def _parse_manifest(path: Path) -> Manifest | None:
    try:
        d = json.loads(read_regular(path, MAX_MANIFEST_BYTES))
        m = Manifest(**d)
    except (OSError, ValueError, TypeError):
        return None
    if m.format != FORMAT or m.id != path.stem or m.file != f"{m.id}.pt":
        return None
    if (
        not isinstance(m.size, int)
        or not isinstance(m.step, int)
        or not isinstance(m.time, float | int)
    ):
        return None
    return m


def _state_problem(path: Path, m: Manifest) -> str | None:
    """Why the state file of a well-formed manifest is not complete, or None."""
    try:
        st = os.lstat(path.with_name(m.file))
    except OSError:
        return f"its state file {m.file} is missing"
    if not stat.S_ISREG(st.st_mode):
        return f"its state file {m.file} is not a regular file"
    if st.st_size != m.size:
        return f"its state file is {st.st_size} bytes, the manifest says {m.size} (truncated?)"
    return None


def read_manifest(path: Path) -> Manifest | None:
    """The manifest at ``path`` when it and its state file are complete, else None."""
    m = _parse_manifest(path)
    return m if m is not None and _state_problem(path, m) is None else None


def damaged(folder: Path) -> list[tuple[Manifest, str]]:
    """Checkpoints whose manifest is whole but whose state file is not, with the reason."""
    if not real_dir(folder):
        return []
    out = []
    for p in folder.glob("*.json"):
        m = _parse_manifest(p)
        why = None if m is None else _state_problem(p, m)
        if m is not None and why is not None:
            out.append((m, why))
    return out


def listing(folder: Path) -> list[Manifest]:
    """Every complete checkpoint, oldest first. Files without a valid manifest are not listed.
    A folder this user cannot read raises PermissionError (an empty list would hide it)."""
    if not real_dir(folder):
        return []
    if not os.access(folder, os.R_OK | os.X_OK, effective_ids=True):
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))
    found = [m for p in folder.glob("*.json") if (m := read_manifest(p)) is not None]
    return sorted(found, key=lambda m: (m.time, m.id))


def _matches(m: Manifest, ref: str) -> bool:
    return m.id.startswith(ref) or (ref.isascii() and ref.isdigit() and m.step == int(ref))


def find(folder: Path, ref: str) -> Manifest:
    """A checkpoint by id, unique id prefix, step number, or ``latest``.

    A checkpoint whose state file is incomplete is never returned; asking for it
    (or for ``latest`` when it is the only one) says it is damaged and why."""
    try:
        found = listing(folder)
    except OSError as exc:
        raise CheckpointError(f"cannot read {folder}: {exc.strerror or exc}") from None
    if ref == "latest":
        if found:
            return found[-1]
        broken = damaged(folder)
        if broken:
            m, why = max(broken, key=lambda b: b[0].time)
            raise CheckpointError(f"this run has no complete checkpoint; {m.id} is damaged: {why}")
        raise CheckpointError("this run has no checkpoints")
    exact = [m for m in found if m.id == ref]
    hits = exact or [m for m in found if m.id.startswith(ref)]
    if not hits and ref.isascii() and ref.isdigit():
        hits = [m for m in found if m.step == int(ref)]
    if len(hits) == 1 or (hits and len({m.step for m in hits}) == 1):
        return hits[-1]
    if hits:
        raise CheckpointError(f"{ref!r} matches {len(hits)} checkpoints; give more of the id")
    for m, why in damaged(folder):
        if _matches(m, ref):
            raise CheckpointError(f"checkpoint {m.id} is damaged: {why}")
    if not found:
        raise CheckpointError("this run has no checkpoints")
    raise CheckpointError(f"no checkpoint {ref!r}; have: {', '.join(m.id for m in found)}")
