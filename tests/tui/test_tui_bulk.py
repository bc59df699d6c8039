"""The viewer's numpy loads with one BLAS thread (its import then costs half the CPU), and
leaves no setting behind for the processes it starts; a user's own choice is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import optitui

BLAS_THREADS = "OPENBLAS_NUM_THREADS"
#: the checkout whose optitui this test imports (the child imports the same)
ROOT = Path(optitui.__file__).resolve().parents[1]

CHILD = """
import json, os, sys
from optitui.tui.bulk import numpy
before = len(os.listdir("/proc/self/task"))
assert "numpy" not in sys.modules
np = numpy()
print(json.dumps({
    "threads": len(os.listdir("/proc/self/task")) - before,
    "env": os.environ.get("OPENBLAS_NUM_THREADS"),
    "sum": float(np.arange(4.0) @ np.arange(4.0)),
}))
"""

needs_threads = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir() or (os.cpu_count() or 1) < 2,
    reason="counts threads in /proc on a machine where OpenBLAS would start more than one",
)


def viewer_numpy(blas_threads: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in (BLAS_THREADS, "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    if blas_threads is not None:
        env[BLAS_THREADS] = blas_threads
    out = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


@needs_threads
def test_numpy_loads_with_one_blas_thread_and_leaves_no_setting() -> None:
    got = viewer_numpy(None)
    assert got == {"threads": 0, "env": None, "sum": 14.0}


@needs_threads
def test_a_users_blas_threads_are_kept() -> None:
    got = viewer_numpy("2")
    assert got == {"threads": 1, "env": "2", "sum": 14.0}
