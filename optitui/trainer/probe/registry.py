"""Every probe this process made: so that a script's end closes the ones left open.

A script that never calls ``probe.close()`` still ends its run: at exit the run
is marked finished, and an uncaught exception marks it failed (with the
traceback), before the previous excepthook prints it as usual.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
from types import TracebackType
from typing import Generic, Protocol, TypeVar


class Closable(Protocol):
    def close(self, error: BaseException | None = None) -> None: ...


P = TypeVar("P", bound=Closable)


class Registry(Generic[P]):
    """The probes made, and those still open; the first one added installs the exit
    handlers (an excepthook, then atexit) that close the open ones."""

    def __init__(self) -> None:
        self._open: list[P] = []
        self._made: list[P] = []
        self._lock = threading.Lock()
        self._installed = False
        self._previous_hook = sys.excepthook

    def add(self, probe: P) -> None:
        """A probe that serves a store (closed at exit if the script does not)."""
        with self._lock:
            self._open.append(probe)
            self._made.append(probe)
        self._install_exit_handlers()

    def closed(self, probe: P) -> None:
        with self._lock:
            if probe in self._open:
                self._open.remove(probe)

    def open_probes(self) -> list[P]:
        """Probes not closed yet."""
        with self._lock:
            return list(self._open)

    def made_probes(self) -> list[P]:
        """Every probe this process made that serves a store, in order."""
        with self._lock:
            return list(self._made)

    def close_all(self, error: BaseException | None = None) -> None:
        for p in self.open_probes():
            with contextlib.suppress(Exception):
                p.close(error)

    def _excepthook(
        self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        self.close_all(exc)
        self._previous_hook(kind, exc, tb)

    def _install_exit_handlers(self) -> None:
        if self._installed:
            return
        self._installed = True
        self._previous_hook = sys.excepthook
        sys.excepthook = self._excepthook
        atexit.register(self.close_all)
