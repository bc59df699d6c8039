"""What a job that died left behind, cleaned when its run is resumed or attached.

A SIGKILL can leave temporary checkpoint files, states without a manifest and a
range test's snapshot file (``.lrfind-ID.pt``). Only regular files of this user
with optitui's own names are removed, only in a run directory that is this
user's (0700, no symlinks) and whose job is gone (its lock is free). Range tests
that were running when the job died are not rewritten (readers never write the
store): :meth:`~optitui.store.reader.RunReader.range_tests` reports them as
failed.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from optitui.store.layout import RunPaths, lock_held, own_problem
from optitui.store.manifests import listing, read_manifest, real_dir

#: the names optitui writes in a checkpoints folder (states, manifests, temporary files)
CHECKPOINT_NAME = re.compile(
    r"^(?:\.)?step\d{8,}-[a-z-]+-[0-9a-f]{4}\.(?:pt|json)(?:\.[0-9a-f]{8}\.tmp)?$"
)
#: a range test's snapshot in the run directory (to_disk=true)
RANGE_TEST_FILE = re.compile(r"^\.lrfind-[A-Za-z0-9_.-]{1,80}\.pt$")


def _ours(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()


def clean_checkpoints(folder: Path) -> list[str]:
    """Remove what an interrupted write left: temporary files, states with no manifest and
    unreadable manifests. Only regular files with optitui's own names are touched; a folder
    that is a symlink is not ours to clean."""
    removed: list[str] = []
    try:
        if not real_dir(folder):
            return removed
        listed = {m.file for m in listing(folder)}
        entries = list(folder.iterdir())
    except OSError:  # a folder this user cannot read: nothing of it is cleaned
        return removed
    for p in entries:
        if not CHECKPOINT_NAME.match(p.name) or not _ours(p):
            continue
        orphan = p.suffix == ".pt" and p.name not in listed
        if p.name.endswith(".tmp") or orphan or (p.suffix == ".json" and not read_manifest(p)):
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


def clean(paths: RunPaths) -> list[str]:
    """Remove what the run's dead job left (names returned); nothing while a job holds the
    run, or when the directory is not this user's own."""
    if own_problem(paths.root) is not None or lock_held(paths.root):
        return []
    removed = [f"checkpoints/{n}" for n in clean_checkpoints(paths.checkpoints)]
    try:
        names = os.listdir(paths.root)
    except OSError:
        return removed
    for name in names:
        path = paths.root / name
        if RANGE_TEST_FILE.match(name) and _ours(path):
            path.unlink(missing_ok=True)
            removed.append(name)
    return removed
