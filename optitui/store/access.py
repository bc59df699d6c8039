"""What a viewer does with a run besides following its history: send commands, read
their answers, the run's state, its range tests and its checkpoints.

The dashboard talks to a :class:`RunAccess` and never to the run directory itself,
so the same screens work on a run on this host (:class:`LocalRun`) and on one read
over ssh (``optitui.remote.RemoteRun``).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from optitui.store import commands
from optitui.store.layout import RunPaths
from optitui.store.manifests import Manifest, listing
from optitui.store.reader import CommandOutcome, Race, RangeTest, RunReader, Status


class RunAccess(Protocol):
    """One run, as a viewer steers it. Every method may be called from any thread."""

    @property
    def label(self) -> str:
        """The run's name as the viewer shows it (``gpu1:runs/big`` for a remote run)."""
        ...

    def send(self, kind: str, args: dict[str, Any]) -> str:
        """Send a command; returns its id. Raises CommandError (nothing sent) when malformed."""
        ...

    def outcome(self, command_id: str) -> CommandOutcome | None:
        """The job's answer to a command, once it has given one."""
        ...

    def undelivered(self, command_id: str) -> str | None:
        """Why a sent command can never reach the job, or None while it still may."""
        ...

    def status(self) -> Status: ...

    def range_test(self, test_id: str) -> RangeTest | None: ...

    def race(self, race_id: str) -> Race | None: ...

    def checkpoints(self) -> list[Manifest]:
        """Every complete checkpoint, oldest first."""
        ...

    def close(self) -> None: ...


class LocalRun:
    """A run directory on this host: commands go into its inbox, answers come from its store."""

    def __init__(self, paths: RunPaths) -> None:
        self.paths = paths
        self._reader: RunReader | None = None
        self._lock = threading.Lock()  # one connection, queried by several workers

    @property
    def label(self) -> str:
        return self.paths.root.name

    def _read(self) -> RunReader:
        if self._reader is None:
            self._reader = RunReader(self.paths.root)
        return self._reader

    def send(self, kind: str, args: dict[str, Any]) -> str:
        return commands.send(self.paths, kind, args)

    def outcome(self, command_id: str) -> CommandOutcome | None:
        with self._lock:
            return self._read().outcome(command_id)

    def undelivered(self, command_id: str) -> str | None:
        return None  # the inbox is a local directory: a written command has arrived

    def status(self) -> Status:
        with self._lock:
            return self._read().status()

    def range_test(self, test_id: str) -> RangeTest | None:
        with self._lock:
            found = self._read().range_tests(test_id)
        return found[0] if found else None

    def race(self, race_id: str) -> Race | None:
        with self._lock:
            found = self._read().races(race_id)
        return found[0] if found else None

    def checkpoints(self) -> list[Manifest]:
        return listing(self.paths.checkpoints)

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
