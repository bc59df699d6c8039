"""Checkpoint files: written atomically, listed only when complete, loaded safely.

A checkpoint is two files in the run's ``checkpoints/`` folder: ``ID.pt``, the
state (one plain dict, loaded with ``weights_only=True``), and ``ID.json``, a
small readable manifest with the state file's size and SHA-256. Each is
written to a temporary name in the same folder, fsynced, renamed, and the
folder fsynced; the manifest goes last. So a crash at any moment leaves
either a complete checkpoint or files that are never listed (and are removed
at the next start). Deletion goes the other way: manifest first.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, cast

import torch

from optitui.store import leftovers
from optitui.store.manifests import FORMAT as FORMAT
from optitui.store.manifests import REASONS as REASONS
from optitui.store.manifests import VERSION as VERSION
from optitui.store.manifests import CheckpointError as CheckpointError
from optitui.store.manifests import Manifest as Manifest
from optitui.store.manifests import find as find
from optitui.store.manifests import listing as listing
from optitui.store.manifests import read_regular


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: bytes per ``os.write`` at most: each call releases the GIL while the kernel copies,
#: and every return takes it back from the training thread, so the calls are few and large
CHUNK = 1 << 30


#: writes smaller than this (torch's zip headers and small records: most of its calls)
#: are gathered and reach the file together: every ``os.write`` lets the GIL go and takes
#: it back, and a low-priority writer put aside by the scheduler while it holds the GIL
#: keeps training waiting
SMALL = 1 << 16


class _HashedFile:
    """The temporary file being written, its SHA-256 and size taken as it goes: the
    state is serialised straight into it, never held whole in memory."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.sha = hashlib.sha256()
        self.size = 0
        self._small = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)  # hashlib releases the GIL over large buffers
        self.size += len(view)
        if len(view) < SMALL:
            self._small += view
            if len(self._small) >= SMALL:
                self.flush()
        else:
            self.flush()
            self._write_all(view)
        return len(view)

    def _write_all(self, view: memoryview) -> None:
        for at in range(0, len(view), CHUNK):
            part = view[at : at + CHUNK]
            while part:
                part = part[os.write(self.fd, part) :]

    def flush(self) -> None:
        """Write what was gathered (before the file is fsynced)."""
        if self._small:
            self._write_all(memoryview(self._small))
            self._small = bytearray()


def _write_atomic(path: Path, fill: Callable[[_HashedFile], object]) -> _HashedFile:
    """Write what ``fill`` puts into a temporary file, fsync it, rename it to ``path``
    and fsync the folder; the file is complete under ``path`` or not there at all."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        out = _HashedFile(fd)
        fill(out)
        out.flush()
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.rename(tmp, path)
    _fsync_dir(path.parent)
    return out


def _serialise(obj: dict[str, Any], out: _HashedFile) -> None:
    """``torch.save`` of ``obj`` into ``out``, less the CRC-32 of each record.

    torch computes that checksum in one call per tensor that holds the GIL throughout
    (about 0.15 s for 100 MB, the training thread stopped all along) and never checks
    it when loading; the manifest's SHA-256, hashed with the GIL released, is what a
    load verifies. The file is torch's usual format (its CRC fields zero), read by any
    ``torch.load``. Where torch lacks the parts used here, a plain ``torch.save``."""
    ser: Any = torch.serialization
    try:
        writer = torch._C.PyTorchFileWriter(
            cast(IO[bytes], out), False, ser._get_storage_alignment()
        )
        save = ser._save
    except (AttributeError, TypeError):
        torch.save(obj, cast(IO[bytes], out))
        return
    save(obj, writer, pickle, ser.DEFAULT_PROTOCOL, False)
    writer.write_end_of_file()


#: per model entry, whether it held NaN and whether it held inf in the run's first state
Expected = dict[str, tuple[bool, bool]]


def _kinds(t: torch.Tensor) -> tuple[bool, bool] | None:
    """(holds NaN, holds inf) for a floating tensor that is not all finite, else None."""
    if not t.is_floating_point() or bool(t.isfinite().all()):
        return None
    return bool(t.isnan().any()), bool(t.isinf().any())


def expected_non_finite(model: torch.nn.Module) -> Expected:
    """Buffers that are not finite before training changes anything: causal masks filled
    with -inf, -inf padding biases and the like. They are legitimate and stay so.
    (Parameters never are.) One read for all the buffers; none when there are none."""
    named = [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
    if not named:
        return {}
    finite = torch.stack([b.isfinite().all() for _, b in named]).tolist()
    out: Expected = {}
    for (name, b), ok in zip(named, finite, strict=True):
        if not ok:
            out[name] = (bool(b.isnan().any()), bool(b.isinf().any()))
    return out


def _tensors(obj: Any, where: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield where, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{where}.{k}")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{where}[{i}]")


#: floating dtypes whose sums every torch has on every device
_SUMMED = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _sums_finite(ts: list[torch.Tensor]) -> list[bool]:
    """Whether each tensor's sum is finite, in one read for all. NaN and inf carry into a
    sum, so a finite sum means every element is. The reverse does not hold (finite values
    whose sum overflows: a float16 one past 65,504), so a tensor whose sum is not finite
    is told by its extremes, which carry NaN and inf too and cannot overflow; only one
    that holds some needs :func:`_kinds`. One reduction per tensor and nothing the size
    of the state: ``isfinite`` of each tensor cost the writer as much CPU as hashing and
    writing the file together."""
    if not ts:
        return []
    unknown = torch.tensor(math.nan, dtype=torch.float64)  # other dtypes: the exact look
    sums = [t.sum().double() if t.dtype in _SUMMED else unknown for t in ts]
    finite = [bool(ok) for ok in torch.stack(sums).isfinite().tolist()]
    for i, t in enumerate(ts):
        if not finite[i] and t.dtype in _SUMMED and t.numel():
            # (not every sum in float32: a float16 tensor's costs seven times as much)
            lo, hi = torch.aminmax(t)
            finite[i] = bool(torch.stack([lo, hi]).isfinite().all())
    return finite


def non_finite(snap: dict[str, Any], expected: Expected | None = None) -> str | None:
    """The first entry holding NaN or inf that training put there, if any (such a state
    is never written): parameters, buffers that were finite at the start (``expected``
    names the others and what they held), and the optimizer's state."""
    expected = expected or {}
    model = [
        (str(name), t)
        for name, t in snap["model"].items()
        if isinstance(t, torch.Tensor) and t.is_floating_point()
    ]
    opt = [
        (where, t)
        for where, t in _tensors(snap.get("optimizer", {}).get("state", {}), "optimizer state")
        if t.is_floating_point()
    ]
    entries = model + opt
    finite = _sums_finite([t for _, t in entries])
    for i, ((name, t), ok) in enumerate(zip(entries, finite, strict=True)):
        kinds = None if ok else _kinds(t)
        if kinds is None:
            continue
        if i >= len(model):
            return name
        had_nan, had_inf = expected.get(name, (False, False))
        if (kinds[0] and not had_nan) or (kinds[1] and not had_inf):
            return name
    return None


def new_id(step: int, reason: str) -> str:
    return f"step{step:08d}-{reason}-{secrets.token_hex(2)}"


def write(
    folder: Path,
    snap: dict[str, Any],
    cid: str,
    *,
    reason: str,
    tag: str | None = None,
    loss: float | None = None,
    val_loss: float | None = None,
    expected: Expected | None = None,
) -> Manifest:
    """Write ``snap`` (host tensors only) as a complete checkpoint; returns its manifest.
    ``expected``: the model entries that were not finite at the start (allowed)."""
    bad = non_finite(snap, expected)
    if bad is not None:
        raise CheckpointError(f"not saved: {bad} holds NaN or inf")
    state_path = folder / f"{cid}.pt"
    written = _write_atomic(
        state_path, lambda f: _serialise({"format": FORMAT, "version": VERSION, **snap}, f)
    )
    manifest = Manifest(
        id=cid,
        step=int(snap["step"]),
        epoch=int(snap["epoch"]),
        loss=loss if loss is None or math.isfinite(loss) else None,
        val_loss=val_loss if val_loss is None or math.isfinite(val_loss) else None,
        time=time.time(),
        reason=reason,
        tag=tag,
        file=state_path.name,
        size=written.size,
        sha256=written.sha.hexdigest(),
        optimizer=str(snap["optimizer_class"]),
    )
    text = json.dumps(asdict(manifest), indent=1).encode()
    _write_atomic(folder / f"{cid}.json", lambda f: f.write(text))
    return manifest


cleanup = leftovers.clean_checkpoints  # what an interrupted write left, ours only


def load(path: Path, manifest: Manifest | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (never retried without it).

    The file is read without following symlinks; with a manifest, its size and SHA-256
    must match. Returns the raw dict: :func:`check_compatible` checks its structure."""
    try:
        data = read_regular(path)
    except OSError as exc:
        raise CheckpointError(f"{path.name}: cannot read: {exc.strerror or exc}") from None
    if manifest is not None and (
        len(data) != manifest.size or hashlib.sha256(data).hexdigest() != manifest.sha256
    ):
        raise CheckpointError(f"{path.name}: contents do not match the manifest (damaged file)")
    try:
        snap = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path.name}: refused: {_weights_only_reason(exc)}") from None
    except Exception as exc:  # truncated, foreign pickles, not a torch file at all
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path.name}: not a loadable checkpoint: {first[:200]}") from None
    if not isinstance(snap, dict) or snap.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: not an optitui checkpoint")
    if snap.get("version") != VERSION:
        raise CheckpointError(
            f"{path.name}: checkpoint version {snap.get('version')!r}; "
            f"this optitui reads version {VERSION}"
        )
    return snap


def _weights_only_reason(exc: BaseException) -> str:
    """optitui's reason for a file ``weights_only=True`` will not load (never torch's advice
    to load it unsafely)."""
    text = str(exc)
    found = re.search(r"Unsupported (?:global: GLOBAL|operand) ?([\w.]+)", text)
    what = f" ({found.group(1)})" if found else ""
    if "Weights only load failed" in text or found:
        return (
            f"it holds Python objects{what}, not only tensors and plain data; optitui loads "
            "checkpoints with weights_only=True and never runs code from a file"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"not a loadable checkpoint: {first[:200]}"


def delete(folder: Path, manifest: Manifest) -> None:
    (folder / f"{manifest.id}.json").unlink(missing_ok=True)  # unlisted first
    (folder / manifest.file).unlink(missing_ok=True)


def prune(folder: Path, keep_last: int, keep_best: bool) -> list[str]:
    """Keep the newest ``keep_last`` periodic checkpoints and the best one; manual and
    before-restore checkpoints are the user's and stay."""
    found = listing(folder)
    periodic = [m for m in found if m.reason == "periodic"]
    best = [m for m in found if m.reason == "best"]
    doomed = periodic[: max(0, len(periodic) - keep_last)]
    doomed += best[:-1] if keep_best else best
    for m in doomed:
        delete(folder, m)
    return [m.id for m in doomed]


def check_compatible(trainer: Any, snap: Any) -> None:
    """Raise CheckpointError unless ``snap`` fits this run's model, optimizer and scheduler,
    with every value of the structure the restore reads (nothing is touched here)."""
    from optitui.trainer.core import snapshot_check

    target = snapshot_check.Target(
        trainer.model, trainer.optimizer, trainer.lr.scheduler, trainer.job.train_data
    )
    snapshot_check.check(snap, target)
