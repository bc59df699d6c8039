"""numpy for the viewer's passes over whole columns, imported on the first such pass.

A first frame of a long run (a million steps) spends most of its Python time on a few
passes over every value: the min/max pyramids and the smoothed-loss windows. numpy does
each in milliseconds. Importing it costs 0.1-0.2 s, so only a pass that long asks for it
(a short run's attach never does), and without numpy every pass has its Python form.

The viewer imports numpy with one BLAS thread: its passes are element-wise or short dot
products, and OpenBLAS starting a thread per core doubles the import's CPU time and
takes the core the first frame is drawn on. The setting is read once, when numpy loads
its BLAS, and is put back at once, so no process started later inherits it; a process
that already has numpy (a job in the viewer's process, with torch) keeps its own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from types import ModuleType

#: the variable OpenBLAS (numpy's BLAS in its wheels) sizes its thread pool from
BLAS_THREADS = "OPENBLAS_NUM_THREADS"


@lru_cache(maxsize=1)
def numpy() -> ModuleType | None:
    """The numpy module, or None where it is not installed."""
    try:
        with _one_blas_thread():
            import numpy as np
    except ImportError:
        return None
    return np


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """One BLAS thread for a numpy imported here, unless the user chose a number."""
    if "numpy" in sys.modules or BLAS_THREADS in os.environ:
        yield
        return
    os.environ[BLAS_THREADS] = "1"
    try:
        yield
    finally:
        os.environ.pop(BLAS_THREADS, None)
