"""The run store: the torch-free protocol between a training job and its viewers.

A run directory holds a SQLite database (WAL mode) with the run's metadata,
metrics, events and command outcomes; an inbox of command files; the job's
captured output; and its checkpoints. One writer (the job), any number of
readers. Nothing here imports torch or textual.
"""

from optitui.store.layout import RunDirError, RunPaths, create_run_dir, find_runs
from optitui.store.reader import latest_running_run

__all__ = ["RunDirError", "RunPaths", "create_run_dir", "find_runs", "latest_running_run"]
