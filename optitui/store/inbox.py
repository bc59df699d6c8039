"""The job's command pump: watches the inbox and hands commands to the trainer.

watchdog wakes the pump when a file lands (inotify on Linux); a slow poll runs
underneath in case events are missed, and a fast poll takes over on
filesystems where watchdog cannot watch (network mounts, inotify limits).
The trainer never waits on this thread: it checks a deque at step boundaries.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from optitui.store.commands import Command, Rejected
from optitui.store.inbox_files import Inbox
from optitui.store.layout import RunPaths
from optitui.store.supervise import Supervisor

WATCHED_POLL_S = 1.0
UNWATCHED_POLL_S = 0.1


class CommandPump:
    """Moves commands from the inbox to :attr:`queue`; rejects malformed ones itself."""

    def __init__(
        self,
        paths: RunPaths,
        on_reject: Callable[[Rejected], None],
        supervisor: Supervisor | None = None,
    ) -> None:
        self.paths = paths
        self.inbox = Inbox(paths)
        self.queue: deque[Command] = deque()
        #: set whenever a command is queued; a paused trainer waits on it
        self.arrived = threading.Event()
        self._on_reject = on_reject
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer: Any = None
        self.watching = False
        sup = supervisor if supervisor is not None else Supervisor()
        self._thread = sup.thread("optitui-commands", self._run)

    def start(self) -> None:
        self._observer = self._start_observer()
        self.watching = self._observer is not None
        self._thread.start()

    def _start_observer(self) -> Any:
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            return None
        wake = self._wake

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake.set()

        try:
            observer = Observer()
            observer.daemon = True
            observer.schedule(_Handler(), str(self.paths.inbox), recursive=False)
            observer.start()
            return observer
        except Exception:  # no inotify here: poll instead
            return None

    def take_now(self) -> None:
        """Take the inbox on the calling thread (at start: commands sent before the job ran)."""
        self._take()

    def _run(self) -> None:
        interval = WATCHED_POLL_S if self.watching else UNWATCHED_POLL_S
        while not self._stop.is_set():
            self._take()  # at once: also after a fault, what came meanwhile is answered
            self._wake.wait(interval)
            self._wake.clear()

    def _take(self) -> None:
        try:
            items = self.inbox.take()
        except OSError:  # the inbox is unreadable for now (a disk hiccup): next poll
            return
        for item in items:
            if isinstance(item, Rejected):
                self._on_reject(item)
            else:
                self.queue.append(item)
                self.arrived.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            try:
                self._observer.stop()
                self._observer.join(2.0)
            except Exception:
                pass
        self._thread.join(5.0)


class NullPump:
    """The command pump of ranks other than 0: commands reach them from rank 0."""

    def __init__(self) -> None:
        self.queue: deque[Command] = deque()
        self.arrived = threading.Event()
        self.watching = False

    def start(self) -> None:
        pass

    def take_now(self) -> None:
        pass

    def stop(self) -> None:
        pass
