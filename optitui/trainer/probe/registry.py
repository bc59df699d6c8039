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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optitui.trainer.probe.watch import Probe

_OPEN: list[Probe] = []
_MADE: list[Probe] = []
_LOCK = threading.Lock()
_installed = False
_previous_hook = sys.excepthook


def add(probe: Probe) -> None:
    """A probe that serves a store (closed at exit if the script does not)."""
    with _LOCK:
        _OPEN.append(probe)
        _MADE.append(probe)
    _install_exit_handlers()


def closed(probe: Probe) -> None:
    with _LOCK:
        if probe in _OPEN:
            _OPEN.remove(probe)


def open_probes() -> list[Probe]:
    """Probes not closed yet."""
    with _LOCK:
        return list(_OPEN)


def made_probes() -> list[Probe]:
    """Every probe this process made that serves a store, in order."""
    with _LOCK:
        return list(_MADE)


def close_all(error: BaseException | None = None) -> None:
    for p in open_probes():
        with contextlib.suppress(Exception):
            p.close(error)


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    close_all(exc)
    _previous_hook(kind, exc, tb)


def _install_exit_handlers() -> None:
    global _installed, _previous_hook
    if _installed:
        return
    _installed = True
    _previous_hook = sys.excepthook
    sys.excepthook = _excepthook
    atexit.register(close_all)
